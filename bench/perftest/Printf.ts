/**
 * A small C `printf` work-alike, just wide enough to render perftest's row macros byte for byte
 * (`%-7lu`, `%-10lu`, `%-7.2f`, `%-7.6lf`, `%d`, `%s`, `%%`). It exists because perftest output is
 * compared by tools and people character by character, and JS has no printf with C's rounding.
 */
import { pvError } from '../../protocol/errors.js';

/** One argument a conversion consumes: numbers for `d/i/u/x/f`, strings for `s`, bigint for wide integers. */
export type PrintfArg = number | bigint | string;

const SPEC = /%([-+ 0#]*)(\d+)?(?:\.(\d+))?(hh|h|ll|l|L|z|j|t)?([diuxXfFs%])/g;

/**
 * Formats like C `sprintf` for the subset above: flags `-`, `0`, `+`, space; width; precision;
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
        break;
      }
      default: {
        const v = Number(arg);
        if (v < 0 || Object.is(v, -0)) sign = '-';
        body = fixed(Math.abs(v), precision ?? 6);
        if (conv === 'F') body = body.toUpperCase();
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
