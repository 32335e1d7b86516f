// N-API surface: a NativeMachine class wrapping ra::Machine, plus disassembleBytes. Input is
// validated here; every ra::Error becomes a JS Error (never a crash).
#include <napi.h>

#include <cmath>
#include <memory>

#include "machine.h"

namespace {

using ra::Machine;

uint64_t toU64(const Napi::Env &env, const Napi::Value &v, const char *what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0)
    throw Napi::RangeError::New(env, std::string(what) + " must be a non-negative integer, got " + v.ToString().Utf8Value());
  return uint64_t(d);
}

Napi::Buffer<uint8_t> bytesArg(const Napi::Env &env, const Napi::Value &v, const char *what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(env, std::string(what) + " must be a Uint8Array or Buffer");
  auto a = v.As<Napi::Uint8Array>();
  return Napi::Buffer<uint8_t>::New(env, a.Data(), a.ByteLength(), [](Napi::Env, uint8_t *) {});
}

const char *kindName(ra::StopKind k) {
  switch (k) {
    case ra::STOP_SYSCALL: return "syscall";
    case ra::STOP_CPUID: return "cpuid";
    case ra::STOP_RDTSC: case ra::STOP_RDTSCP: return "rdtsc";
    case ra::STOP_INVALID: return "invalid-instruction";
    case ra::STOP_FAULT: return "memory-fault";
    case ra::STOP_INTERRUPT: case ra::STOP_HALT: return "interrupt";
    case ra::STOP_TICK_TARGET: return "tick-target";
    case ra::STOP_BREAKPOINT: return "breakpoint";
    case ra::STOP_BUDGET: return "budget";
    case ra::STOP_INSN_TARGET: return "instruction-target";
    case ra::STOP_WATCH: return "watchpoint";
    default: return "none";
  }
}

Napi::Array insnsToJs(const Napi::Env &env, const std::vector<ra::Insn> &v) {
  Napi::Array out = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("address", Napi::Number::New(env, double(v[i].address)));
    o.Set("bytes", Napi::Buffer<uint8_t>::Copy(env, v[i].bytes.data(), v[i].bytes.size()));
    o.Set("text", v[i].text);
    out.Set(i, o);
  }
  return out;
}

class NativeMachine : public Napi::ObjectWrap<NativeMachine> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeMachine",
                       {
                           InstanceMethod("map", &NativeMachine::Map),
                           InstanceMethod("unmap", &NativeMachine::Unmap),
                           InstanceMethod("protect", &NativeMachine::Protect),
                           InstanceMethod("read", &NativeMachine::Read),
                           InstanceMethod("write", &NativeMachine::Write),
                           InstanceMethod("regions", &NativeMachine::Regions),
                           InstanceMethod("getUserRegs", &NativeMachine::GetUserRegs),
                           InstanceMethod("setUserRegs", &NativeMachine::SetUserRegs),
                           InstanceMethod("getFxsave", &NativeMachine::GetFxsave),
                           InstanceMethod("setFxsave", &NativeMachine::SetFxsave),
                           InstanceMethod("getReg", &NativeMachine::GetReg),
                           InstanceMethod("setReg", &NativeMachine::SetReg),
                           InstanceMethod("counters", &NativeMachine::Counters),
                           InstanceMethod("setCounters", &NativeMachine::SetCounters),
                           InstanceMethod("run", &NativeMachine::Run),
                           InstanceMethod("setBreakpoints", &NativeMachine::SetBreakpoints),
                           InstanceMethod("setWatchpoints", &NativeMachine::SetWatchpoints),
                           InstanceMethod("takeWatchHits", &NativeMachine::TakeWatchHits),
                           InstanceMethod("recentBlocks", &NativeMachine::RecentBlocks),
                           InstanceMethod("disassemble", &NativeMachine::Disassemble),
                           InstanceMethod("close", &NativeMachine::Close),
                       });
  }

  NativeMachine(const Napi::CallbackInfo &info) : Napi::ObjectWrap<NativeMachine>(info) {
    bool counting = info.Length() < 1 || info[0].ToBoolean().Value();
    try {
      m.reset(new Machine(counting));
    } catch (const ra::Error &e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
  }

 private:
  std::unique_ptr<Machine> m;

  Machine &M(const Napi::Env &env) {
    if (!m || m->closed()) throw Napi::Error::New(env, "Machine is closed");
    return *m;
  }

  template <class F>
  auto guard(const Napi::Env &env, F f) -> decltype(f()) {
    try {
      return f();
    } catch (const ra::Error &e) {
      throw Napi::Error::New(env, e.what());
    }
  }

  Napi::Value Map(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    uint64_t a = toU64(env, info[0], "address"), s = toU64(env, info[1], "size"), p = toU64(env, info[2], "prot");
    guard(env, [&] { mm.map(a, s, uint32_t(p > 0xffffffff ? 0xffffffff : p)); return 0; });
    return env.Undefined();
  }
  Napi::Value Unmap(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    uint64_t a = toU64(env, info[0], "address"), s = toU64(env, info[1], "size");
    guard(env, [&] { mm.unmap(a, s); return 0; });
    return env.Undefined();
  }
  Napi::Value Protect(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    uint64_t a = toU64(env, info[0], "address"), s = toU64(env, info[1], "size"), p = toU64(env, info[2], "prot");
    guard(env, [&] { mm.protect(a, s, uint32_t(p > 0xffffffff ? 0xffffffff : p)); return 0; });
    return env.Undefined();
  }
  Napi::Value Read(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    uint64_t a = toU64(env, info[0], "address"), s = toU64(env, info[1], "size");
    if (s > (1ull << 31)) throw Napi::RangeError::New(env, "read: size too large");
    auto buf = Napi::Buffer<uint8_t>::New(env, s);
    guard(env, [&] { mm.read(a, buf.Data(), s); return 0; });
    return buf;
  }
  Napi::Value Write(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    uint64_t a = toU64(env, info[0], "address");
    auto b = bytesArg(env, info[1], "data");
    guard(env, [&] { mm.write(a, b.Data(), b.Length()); return 0; });
    return env.Undefined();
  }
  Napi::Value Regions(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    Napi::Array out = Napi::Array::New(env, mm.regions.size());
    for (size_t i = 0; i < mm.regions.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("start", double(mm.regions[i].start));
      o.Set("end", double(mm.regions[i].end));
      o.Set("prot", double(mm.regions[i].prot));
      out.Set(i, o);
    }
    return out;
  }
  Napi::Value GetUserRegs(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    auto buf = Napi::Buffer<uint8_t>::New(env, 216);
    guard(env, [&] { mm.getUserRegs(buf.Data()); return 0; });
    return buf;
  }
  Napi::Value SetUserRegs(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    auto b = bytesArg(env, info[0], "regs");
    if (b.Length() != 216) throw Napi::RangeError::New(env, "setUserRegs: expected 216 bytes (user_regs_struct), got " + std::to_string(b.Length()));
    guard(env, [&] { mm.setUserRegs(b.Data()); return 0; });
    return env.Undefined();
  }
  Napi::Value GetFxsave(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    auto buf = Napi::Buffer<uint8_t>::New(env, 512);
    guard(env, [&] { mm.getFxsave(buf.Data()); return 0; });
    return buf;
  }
  Napi::Value SetFxsave(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    auto b = bytesArg(env, info[0], "area");
    if (b.Length() != 512) throw Napi::RangeError::New(env, "setFxsave: expected 512 bytes (FXSAVE area), got " + std::to_string(b.Length()));
    guard(env, [&] { mm.setFxsave(b.Data()); return 0; });
    return env.Undefined();
  }
  Napi::Value GetReg(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "register name must be a string");
    std::string n = info[0].As<Napi::String>().Utf8Value();
    uint64_t v = guard(env, [&] { return mm.getReg(n); });
    return Napi::BigInt::New(env, v);
  }
  Napi::Value SetReg(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "register name must be a string");
    if (!info[1].IsBigInt()) throw Napi::TypeError::New(env, "register value must be a bigint");
    std::string n = info[0].As<Napi::String>().Utf8Value();
    bool lossless = true;
    uint64_t v = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw Napi::RangeError::New(env, "register value must fit in 64 unsigned bits");
    guard(env, [&] { mm.setReg(n, v); return 0; });
    return env.Undefined();
  }
  // [ticks, instructions, rep]: rep is the address of a rep string instruction already counted and
  // still iterating, or -1.
  Napi::Value Counters(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    Napi::Array a = Napi::Array::New(env, 3);
    a.Set(uint32_t(0), double(mm.ticks));
    a.Set(uint32_t(1), double(mm.instructions));
    a.Set(uint32_t(2), mm.repInProgress == ra::NONE ? -1.0 : double(mm.repInProgress));
    return a;
  }
  // setCounters(ticks, instructions, rep?): rep as counters() gives it; absent: unchanged.
  Napi::Value SetCounters(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    uint64_t t = toU64(env, info[0], "ticks"), i = toU64(env, info[1], "instructions");
    uint64_t rep = mm.repInProgress;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      rep = info[2].IsNumber() && info[2].As<Napi::Number>().DoubleValue() == -1 ? ra::NONE : toU64(env, info[2], "rep");
    }
    mm.ticks = t;
    mm.instructions = i;
    mm.repInProgress = rep;
    mm.updateKey();
    return env.Undefined();
  }
  // run(tickTarget?, budget?, step, instructionTarget?)
  Napi::Value Run(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    auto opt = [&](int i, const char *what) {
      if (info[i].IsUndefined() || info[i].IsNull()) return ra::NONE;
      return toU64(env, info[i], what);
    };
    uint64_t t = opt(0, "tickTarget"), b = opt(1, "instructionBudget");
    bool step = info[2].ToBoolean().Value();
    uint64_t it = info.Length() > 3 ? opt(3, "instructionTarget") : ra::NONE;
    ra::Stop s = guard(env, [&] { return mm.run(t, b, step, it); });
    Napi::Object o = Napi::Object::New(env);
    o.Set("kind", kindName(s.kind));
    o.Set("rip", double(s.rip));
    if (s.kind == ra::STOP_RDTSC || s.kind == ra::STOP_RDTSCP) o.Set("insn", s.kind == ra::STOP_RDTSC ? "rdtsc" : "rdtscp");
    if (s.kind == ra::STOP_FAULT) {
      o.Set("address", double(s.address));
      o.Set("access", s.access == 0 ? "read" : s.access == 1 ? "write" : "fetch");
      o.Set("cause", s.cause == 0 ? "unmapped" : "protection");
    }
    if (s.kind == ra::STOP_INTERRUPT) o.Set("vector", double(s.vector));
    if (s.kind == ra::STOP_WATCH) {
      o.Set("address", double(s.address));
      o.Set("size", double(s.size));
      o.Set("access", s.access == 1 ? "write" : "read");
      o.Set("instructions", double(s.instructions));
    }
    if (s.kind == ra::STOP_HALT) {
      o.Set("vector", 13.0);
      o.Set("halt", true);
    }
    return o;
  }
  Napi::Value SetBreakpoints(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "setBreakpoints: expected an array of addresses");
    auto arr = info[0].As<Napi::Array>();
    std::vector<uint64_t> v;
    for (uint32_t i = 0; i < arr.Length(); i++) v.push_back(toU64(env, arr.Get(i), "breakpoint address"));
    guard(env, [&] { mm.setBreakpoints(v); return 0; });
    return env.Undefined();
  }
  // setWatchpoints([{ address, length, kind: 'write' | 'read' | 'access' }], collect?)
  Napi::Value SetWatchpoints(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "setWatchpoints: expected an array of { address, length, kind }");
    auto arr = info[0].As<Napi::Array>();
    std::vector<ra::Watch> v;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value e = arr.Get(i);
      if (!e.IsObject()) throw Napi::TypeError::New(env, "setWatchpoints: each watchpoint must be { address, length, kind }");
      Napi::Object o = e.As<Napi::Object>();
      uint64_t a = toU64(env, o.Get("address"), "watchpoint address"), n = toU64(env, o.Get("length"), "watchpoint length");
      if (n == 0) throw Napi::RangeError::New(env, "setWatchpoints: length must be at least 1");
      if (a >= (1ull << 48) || n > (1ull << 48)) throw Napi::RangeError::New(env, "setWatchpoints: range outside the address space");
      std::string k = o.Get("kind").IsString() ? o.Get("kind").As<Napi::String>().Utf8Value() : "";
      if (k != "write" && k != "read" && k != "access")
        throw Napi::TypeError::New(env, "setWatchpoints: kind must be 'write', 'read' or 'access'");
      v.push_back({a, a + n, k != "write", k != "read"});
    }
    bool collect = info.Length() > 1 && info[1].ToBoolean().Value();
    guard(env, [&] { mm.setWatchpoints(v, collect); return 0; });
    return env.Undefined();
  }
  // takeWatchHits() -> { count, last?: { rip, address, size, access, instructions, ambiguous? }, ambiguous? }, and clears them
  Napi::Value TakeWatchHits(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("count", double(mm.hitCount));
    if (mm.haveLast) {
      const ra::WatchHit &h = mm.lastHit;
      Napi::Object l = Napi::Object::New(env);
      l.Set("rip", double(h.rip));
      l.Set("address", double(h.address));
      l.Set("size", double(h.size));
      l.Set("access", h.write ? "write" : "read");
      l.Set("instructions", double(h.instructions));
      if (h.ambiguous) l.Set("ambiguous", true);
      o.Set("last", l);
    }
    if (mm.hitAmbiguous) o.Set("ambiguous", double(mm.hitAmbiguous));
    mm.hitCount = mm.hitAmbiguous = 0;
    mm.haveLast = mm.havePrev = false;
    return o;
  }
  Napi::Value RecentBlocks(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    Napi::Array out = Napi::Array::New(env);
    uint32_t n = mm.ringPos < 16 ? mm.ringPos : 16, k = 0;
    for (uint32_t i = mm.ringPos - n; i != mm.ringPos; i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("address", double(mm.ring[i & 15] & ((uint64_t(1) << 48) - 1)));
      o.Set("size", double(mm.ring[i & 15] >> 48));
      out.Set(k++, o);
    }
    return out;
  }
  Napi::Value Disassemble(const Napi::CallbackInfo &info) {
    auto env = info.Env();
    Machine &mm = M(env);
    uint64_t a = toU64(env, info[0], "address"), n = toU64(env, info[1], "count");
    if (n > 100000) throw Napi::RangeError::New(env, "disassemble: count too large");
    std::vector<uint8_t> buf;
    // Read what is mapped, up to 15 bytes per instruction.
    for (uint64_t i = 0; i < n * 15; i++) {
      uint8_t *p = mm.hostPtr(a + i, 1);
      if (!p) break;
      buf.push_back(*p);
    }
    if (buf.empty()) throw Napi::Error::New(env, "disassemble: address 0x" + ([&] { char b[32]; snprintf(b, 32, "%llx", (unsigned long long)a); return std::string(b); })() + " is not mapped");
    return insnsToJs(env, ra::disassemble(mm.cs, buf.data(), buf.size(), a, n));
  }
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (m) m->close();
    return info.Env().Undefined();
  }
};

Napi::Value DisassembleBytes(const Napi::CallbackInfo &info) {
  auto env = info.Env();
  auto b = bytesArg(env, info[0], "bytes");
  uint64_t a = toU64(env, info[1], "address");
  static csh cs = 0;
  if (!cs) cs = ra::openCapstone();
  return insnsToJs(env, ra::disassemble(cs, b.Data(), b.Length(), a, SIZE_MAX));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeMachine", NativeMachine::Init(env));
  exports.Set("disassembleBytes", Napi::Function::New(env, DisassembleBytes));
  return exports;
}

}  // namespace

NODE_API_MODULE(emulator, Init)
