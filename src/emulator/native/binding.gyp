{
  "targets": [
    {
      "target_name": "emulator",
      "sources": ["addon.cc", "machine.cc", "blocks.cc", "memory.cc", "regs.cc", "disasm.cc", "fault.cc", "emulate.cc", "watch.cc", "collect.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O2", "-Wall", "-Wno-missing-field-initializers"],
      "libraries": ["-lunicorn", "-lcapstone"]
    }
  ]
}
