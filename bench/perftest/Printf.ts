/**
 * A small C `printf` work-alike, just wide enough to render perftest's row macros byte for byte
 * (`%-7lu`, `%-10lu`, `%-7.2f`, `%-7.6lf`, `%d`, `%s`, `%%`) and its `-H` sample lines (`%g`). It
 * exists because perftest output is compared by tools and people character by character, and JS
 * has no printf with C's rounding.
 */
import { pvError } from '../../protocol/errors.js';

/** One argument a conversion consumes: numbers for `d/i/u/x/f/e/g`, strings for `s`, bigint for wide integers. */
export type PrintfArg = number | bigint | string;

const SPEC = /%([-+ 0#]*)(\d+)?(?:\.(\d+))?(hh|h|ll|l|L|z|j|t)?([diuxXfFeEgGs%])/g;

/**
 * Formats like C `sprintf` for the subset above: flags `-`, `0`, `+`, space, `#` (e/g); width; precision;
 * length modifiers are accepted and ignored (JS numbers carry their own width). `%f` rounds the
 * exact binary value and breaks exact ties to even, as glibc does (JS `toFixed` breaks them up).
 */
export function sprintf(format: string, ...args: readonly PrintfArg[]): string {
  let next = 0;
  return format.replace(SPEC, (_m, flags: string, width: string | undefined, prec: string | undefined, _len, conv) => {
    if (conv === '%') return '%';
    if (next >= args.length) throw pvError('PV_ERR_INVALID_ARG', `printf: too few arguments for "${format}"`);
    const arg = args[next++];
    const precision = prec === undefined ? undefined : Number(prec);
    let body: string;
    let sign = '';
    switch (conv) {
      case 's':
        body = String(arg);
        if (precision !== undefined) body = body.slice(0, precision);
        return pad(body, '', flags, width, false);
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X': {
        let v = toBigInt(arg);
        if (v < 0n) {
          sign = '-';
          v = -v;
        }
        body = conv === 'x' ? v.toString(16) : conv === 'X' ? v.toString(16).toUpperCase() : v.toString(10);
        if (precision !== undefined) body = body.padStart(precision, '0');
        // C's alternate form: 0x / 0X before a non-zero hex value (perftest's %#06x key lines).
        if (flags.includes('#') && (conv === 'x' || conv === 'X') && v !== 0n) sign += conv === 'x' ? '0x' : '0X';
        break;
      }
      default: {
        const v = Number(arg);
        if (v < 0 || Object.is(v, -0)) sign = '-';
        const a = Math.abs(v);
        const p = precision ?? 6;
        if (conv === 'e' || conv === 'E') body = exponential(a, p, flags.includes('#'));
        else if (conv === 'g' || conv === 'G') body = general(a, p, flags.includes('#'));
        else body = fixed(a, p);
        if (conv === 'F' || conv === 'E' || conv === 'G') body = body.toUpperCase();
      }
    }
    if (sign === '' && flags.includes('+')) sign = '+';
    else if (sign === '' && flags.includes(' ')) sign = ' ';
    // C ignores `0` when `-` is given, and for integers when a precision is given.
    const zero = flags.includes('0') && !flags.includes('-') && !(precision !== undefined && 'diuxX'.includes(conv));
    return pad(body, sign, flags, width, zero);
  });
}

function pad(body: string, sign: string, flags: string, width: string | undefined, zero: boolean): string {
  const w = width === undefined ? 0 : Number(width);
  const len = sign.length + body.length;
  if (len >= w) return sign + body;
  if (flags.includes('-')) return sign + body + ' '.repeat(w - len);
  if (zero) return sign + '0'.repeat(w - len) + body;
  return ' '.repeat(w - len) + sign + body;
}

function toBigInt(arg: PrintfArg): bigint {
  if (typeof arg === 'bigint') return arg;
  const n = Number(arg);
  // C would reinterpret bits; refusing is kinder than printing nonsense for NaN.
  if (!Number.isFinite(n)) throw pvError('PV_ERR_INVALID_ARG', `printf: integer conversion of ${String(arg)}`);
  return BigInt(Math.trunc(n));
}

/**
 * `%.<p>f` of a non-negative finite double with glibc's rounding: the exact binary value is
 * rounded to nearest and an exact tie goes to the even digit. `toFixed` already rounds the
 * exact value, so only ties need care; a tie is a value whose exact expansion ends in `5`
 * right after the kept digits (it then terminates well within `toFixed`'s 100 digits).
 */
export function fixed(x: number, precision: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return 'inf';
  if (x >= 1e21) {
    // Doubles this large are integers; toFixed would switch to exponent notation.
    const int = BigInt(x).toString();
    return precision > 0 ? `${int}.${'0'.repeat(precision)}` : int;
  }
  const rounded = x.toFixed(precision);
  if (precision > 98) return rounded;
  const exact = x.toFixed(100);
  const dot = exact.indexOf('.');
  const tail = exact.slice(dot + 1 + precision);
  if (!/^50*$/.test(tail)) return rounded;
  // Exact tie: truncate, then round up only when the last kept digit is odd.
  const kept = exact.slice(0, dot + 1 + precision).replace(/\.$/, '');
  const digits = BigInt(kept.replace('.', ''));
  const last = Number(digits % 10n);
  const result = (last % 2 === 1 ? digits + 1n : digits).toString().padStart(precision + 1, '0');
  return precision === 0 ? result : `${result.slice(0, -precision)}.${result.slice(-precision)}`;
}

/**
 * The exact decimal digits of a positive finite double and the decimal exponent of the first:
 * x = m · 2^e exactly, so for e < 0 it is m · 5^−e / 10^−e, whose digits BigInt gives exactly.
 */
function exactDigits(x: number): { digits: string; exp: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biased = (hi >>> 20) & 0x7ff;
  const frac = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  // Subnormals have no implicit leading 1 and the smallest exponent.
  const m = biased === 0 ? frac : frac | (1n << 52n);
  const e = (biased === 0 ? 1 : biased) - 1075;
  if (e >= 0) {
    const digits = (m << BigInt(e)).toString();
    return { digits, exp: digits.length - 1 };
  }
  const digits = (m * 5n ** BigInt(-e)).toString();
  return { digits, exp: digits.length - 1 + e };
}

/**
 * The first `p` significant decimal digits of a non-negative finite double, rounded as glibc
 * rounds (exact binary value, ties to even), and the decimal exponent of the first digit after
 * rounding (9.9999996 at p = 6 is `100000`, exponent 1). Zero gives `p` zeros, exponent 0.
 */
export function significant(x: number, p: number): { digits: string; exp: number } {
  if (x === 0) return { digits: '0'.repeat(p), exp: 0 };
  const { digits: all, exp: e0 } = exactDigits(x);
  let exp = e0;
  let head = all.slice(0, p).padEnd(p, '0');
  const tail = all.slice(p);
  const odd = Number(head[p - 1]) % 2 === 1;
  const up = tail[0] > '5' || (tail[0] === '5' && (/[1-9]/.test(tail.slice(1)) || odd));
  if (up) {
    head = (BigInt(head) + 1n).toString().padStart(p, '0');
    if (head.length > p) {
      head = head.slice(0, p);
      exp++;
    }
  }
  return { digits: head, exp };
}

function stripZeros(s: string): string {
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

function expSuffix(exp: number): string {
  return `e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

/** `%.<p>e` of a non-negative finite double (`1.234500e+03`); `alt` is the `#` flag. */
export function exponential(x: number, p: number, alt = false): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return 'inf';
  const { digits, exp } = significant(x, p + 1);
  const mant = p > 0 || alt ? `${digits[0]}.${digits.slice(1)}` : digits;
  return mant + expSuffix(exp);
}

/**
 * `%.<p>g` of a non-negative finite double, as C99 7.21.6.1 defines it: with P = p (1 if 0) and X
 * the exponent after rounding to P digits, fixed notation with P − 1 − X decimals when
 * P > X ≥ −4, else exponent notation with P − 1; trailing zeros (and a bare point) are removed
 * unless `alt` (`#`). perftest prints its `-H` samples with `%g`.
 */
export function general(x: number, p: number, alt = false): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return 'inf';
  const P = p === 0 ? 1 : p;
  const { digits, exp } = significant(x, P);
  let out: string;
  if (exp < -4 || exp >= P) {
    const mant = P > 1 || alt ? `${digits[0]}.${digits.slice(1)}` : digits;
    out = (alt ? mant : stripZeros(mant)) + expSuffix(exp);
  } else {
    const body =
      exp >= 0 ? `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}` : `0.${'0'.repeat(-exp - 1)}${digits}`;
    out = alt ? body : stripZeros(body);
  }
  return out;
}
