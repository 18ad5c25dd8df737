#!/bin/sh
# fp8ctl_cast.sh: fp8ctl cast against bytes derived by hand from the FP8
# bit layouts (fp8-semantics.md 1.1-1.4), on the default and the forced
# reference kernels, plus its usage and bad-input exit codes.
# Inputs are built with printf octal escapes (little-endian).
set -u
top=${FP8D_TOP_BUILDDIR:-.}
ctl="$top/server/fp8ctl"
if [ ! -x "$ctl" ]; then
    echo "FAIL: $ctl not built"
    exit 1
fi
fail=0
hex() { od -An -tx1 -v | tr -d ' \n'; }

# expect NAME WANT_HEX INPUT_PRINTF_FORMAT ARGS...
expect() {
    name=$1 want=$2 input=$3
    shift 3
    got=$(printf "$input" | "$ctl" cast "$@" 2>/dev/null | hex)
    if [ "$got" != "$want" ]; then
        echo "FAIL: $name: fp8ctl cast $*: got '$got', want '$want'"
        fail=1
    fi
}

# expect_rc NAME RC INPUT_PRINTF_FORMAT ARGS...
expect_rc() {
    name=$1 want=$2 input=$3
    shift 3
    printf "$input" | "$ctl" cast "$@" >/dev/null 2>&1
    rc=$?
    if [ "$rc" != "$want" ]; then
        echo "FAIL: $name: fp8ctl cast $*: exit $rc, want $want"
        fail=1
    fi
}

# f32 bit patterns (little-endian octal):
one='\000\000\200\077'      # 1.0         0x3F800000
f464='\000\000\350\103'     # 464         0x43E80000 (tie 448/480)
f480='\000\000\360\103'     # 480         0x43F00000
f61440='\000\000\160\107'   # 61440       0x47700000 (tie 57344/65536)
negz='\000\000\000\200'     # -0.0        0x80000000
halfsub='\000\000\200\072'  # 2^-10       0x3A800000 (half the e4m3 min subnormal)
nhalfsub='\000\000\200\272' # -2^-10      0xBA800000
ninf='\000\000\200\377'     # -inf        0xFF800000
qnan='\000\000\300\177'     # NaN         0x7FC00000
f150='\000\000\026\103'     # 150         0x43160000

for k in default ref; do
    if [ $k = ref ]; then FP8D_KERNELS=ref; export FP8D_KERNELS; fi
    # 1.0 = 2^0: e4m3 E=7 -> 0x38; e5m2 E=15 -> 0x3C.
    expect "$k one e4m3" 38 "$one" --format e4m3
    expect "$k one e5m2" 3c "$one" --format=e5m2
    # 464 rounds down to 448 (0x7E) in both modes; 480 overflows.
    expect "$k 464 sat" 7e "$f464" --format e4m3
    expect "$k 464 nonsat" 7e "$f464" --format e4m3 --no-saturate
    expect "$k 480 sat" 7e "$f480" --format e4m3
    expect "$k 480 nonsat" 7f "$f480" --format e4m3 --no-saturate
    # e5m2: 61440 rounds up to 65536, i.e. overflow: inf (0x7C) or max (0x7B).
    expect "$k 61440 nonsat" 7c "$f61440" --format e5m2 --no-saturate
    expect "$k 61440 sat" 7b "$f61440" --format e5m2
    # Signed zero, half the smallest subnormal (tie to even 0, sign kept).
    expect "$k -0" 80 "$negz" --format e4m3
    expect "$k half min sub" 0080 "$halfsub$nhalfsub" --format e4m3
    # -inf: saturates to -448 (0xFE), non-saturating e4m3 NaN 0xFF, e5m2 -inf 0xFC.
    expect "$k -inf sat" fe "$ninf" --format e4m3
    expect "$k -inf e4m3 nonsat" ff "$ninf" --format e4m3 --no-saturate
    expect "$k -inf e5m2 nonsat" fc "$ninf" --format e5m2 --no-saturate
    expect "$k NaN" 7f "$qnan" --format e4m3
    # Scaled: 1.0 * 2 = 2.0 -> E=8: 0x40; 150 / 2 = 75 = 1.171875 * 2^6 -> 1.125 * 64: E=13, M=1 -> 0x69.
    expect "$k scale" 40 "$one" --format e4m3 --scale 2
    expect "$k divide" 69 "$f150" --format e4m3 --scale 2 --divide
    # bf16 1.0 = 0x3F80; f16 448 = 0x5F00 -> e4m3 0x7E; f16 2^-24 = 0x0001 -> e5m2 0x00.
    expect "$k bf16" 38 '\200\077' --format e4m3 --from bf16
    expect "$k f16" 7e00 '\000\137\001\000' --format e4m3 --from f16
    # Decode: 0x38 -> 1.0, 0x7E -> 448 (0x43E00000), 0x80 -> -0; e5m2 0x7C -> inf.
    expect "$k decode e4m3" 0000803f0000e04300000080 '\070\176\200' --decode --format e4m3
    expect "$k decode e5m2" 0000807f '\174' --decode --format e5m2
    expect "$k decode scaled" 0000003f '\070' --decode --format e4m3 --scale 0.5
done
unset FP8D_KERNELS

# Usage errors exit 2; bad input (a partial element) exits 1.
expect_rc "no format" 2 "$one"
expect_rc "bad format" 2 "$one" --format e3m4
expect_rc "bad scale" 2 "$one" --format e4m3 --scale abc
expect_rc "zero scale" 2 "$one" --format e4m3 --scale 0
expect_rc "bad from" 2 "$one" --format e4m3 --from f64
expect_rc "unknown option" 2 "$one" --format e4m3 --frobnicate
expect_rc "decode with from" 2 '\070' --decode --format e4m3 --from bf16
expect_rc "3 bytes of f32" 1 '\000\000\200' --format e4m3
expect_rc "odd bytes of bf16" 1 '\200\077\000' --format e4m3 --from bf16
expect_rc "empty input" 0 '' --format e4m3
expect_rc "help" 0 '' --help
# The whole elements before a partial one are still written.
expect "partial tail" 38 "$one\\000" --format e4m3

if [ $fail = 0 ]; then
    echo "PASS: fp8ctl cast"
fi
exit $fail
