// The target description gdb reads with qXfer:features:read:target.xml: an x86-64 GNU/Linux
// process with the core, sse, linux (orig_rax) and segments (fs_base, gs_base) features, so that
// gdb picks its amd64-linux architecture (signal frames, syscall restart, TLS bases). Registers are
// listed in GDB_REGISTERS order, which is the numbering `g` and `p` use.
import { GDB_REGISTERS, type Feature } from './registers.ts';

const FEATURE_NAMES: Record<Feature, string> = {
  core: 'org.gnu.gdb.i386.core',
  sse: 'org.gnu.gdb.i386.sse',
  linux: 'org.gnu.gdb.i386.linux',
  segments: 'org.gnu.gdb.i386.segments',
};

function flags(id: string, size: number, bits: [string, number][]): string[] {
  return [`    <flags id="${id}" size="${size}">`, ...bits.map(([name, bit]) => `      <field name="${name}" start="${bit}" end="${bit}"/>`), '    </flags>'];
}

/** Types each feature defines before its registers use them. */
const FEATURE_TYPES: Record<Feature, string[]> = {
  core: flags('i386_eflags', 4, [
    ['CF', 0], ['', 1], ['PF', 2], ['AF', 4], ['ZF', 6], ['SF', 7], ['TF', 8], ['IF', 9], ['DF', 10], ['OF', 11],
    ['NT', 14], ['RF', 16], ['VM', 17], ['AC', 18], ['VIF', 19], ['VIP', 20], ['ID', 21],
  ]),
  sse: [
    '    <vector id="v4f" type="ieee_single" count="4"/>',
    '    <vector id="v2d" type="ieee_double" count="2"/>',
    '    <vector id="v16i8" type="int8" count="16"/>',
    '    <vector id="v8i16" type="int16" count="8"/>',
    '    <vector id="v4i32" type="int32" count="4"/>',
    '    <vector id="v2i64" type="int64" count="2"/>',
    '    <union id="vec128">',
    '      <field name="v4_float" type="v4f"/>',
    '      <field name="v2_double" type="v2d"/>',
    '      <field name="v16_int8" type="v16i8"/>',
    '      <field name="v8_int16" type="v8i16"/>',
    '      <field name="v4_int32" type="v4i32"/>',
    '      <field name="v2_int64" type="v2i64"/>',
    '      <field name="uint128" type="uint128"/>',
    '    </union>',
    ...flags('i386_mxcsr', 4, [
      ['IE', 0], ['DE', 1], ['ZE', 2], ['OE', 3], ['UE', 4], ['PE', 5], ['DAZ', 6],
      ['IM', 7], ['DM', 8], ['ZM', 9], ['OM', 10], ['UM', 11], ['PM', 12], ['FZ', 15],
    ]),
  ],
  linux: [],
  segments: [],
};

function buildXml(): string {
  const lines = [
    '<?xml version="1.0"?>',
    '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
    '<target version="1.0">',
    '  <architecture>i386:x86-64</architecture>',
    '  <osabi>GNU/Linux</osabi>',
  ];
  const order: Feature[] = ['core', 'sse', 'linux', 'segments'];
  for (const feature of order) {
    lines.push(`  <feature name="${FEATURE_NAMES[feature]}">`);
    lines.push(...FEATURE_TYPES[feature]);
    GDB_REGISTERS.forEach((r, n) => {
      if (r.feature !== feature) return;
      const group = r.group ? ` group="${r.group}"` : '';
      lines.push(`    <reg name="${r.name}" bitsize="${r.bits}" type="${r.type}" regnum="${n}"${group}/>`);
    });
    lines.push('  </feature>');
  }
  lines.push('</target>', '');
  return lines.join('\n');
}

/** The whole target.xml document. */
export const TARGET_XML: string = buildXml();

/** What qXfer:features:read serves: target.xml only (everything is in that one document). */
export function featureDocument(annex: string): string | undefined {
  return annex === 'target.xml' ? TARGET_XML : undefined;
}
