// Number formatting for the demo: counts, bytes, rates, durations, wei → ETH.

const group = new Intl.NumberFormat('en-US');

/** 12345 → "12,345". */
export function count(n) {
  return group.format(Math.round(Number(n) || 0));
}

/** Bytes in B / KiB / MiB / GiB with three significant digits. */
export function bytes(n) {
  n = Number(n) || 0;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  if (i === 0) return `${Math.round(n)} B`;
  return `${n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)} ${units[i]}`;
}

/** A duration in ms as "850 ms", "4.2 s", "3 min 10 s", "2 h 05 min". */
export function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.round(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** A per-second rate: "12,345". */
export function rate(perSecond) {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return '—';
  return perSecond >= 100 ? count(perSecond) : perSecond.toFixed(1);
}

const WEI_PER_ETH = 10n ** 18n;

/** A wei amount (bigint or decimal string) as ETH with every significant decimal: "11,901,484.23948". */
export function eth(wei) {
  const w = BigInt(wei);
  const neg = w < 0n;
  const abs = neg ? -w : w;
  const whole = abs / WEI_PER_ETH;
  const frac = (abs % WEI_PER_ETH).toString().padStart(18, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${group.format(whole)}${frac ? `.${frac}` : ''}`;
}

/** A wei amount with digit grouping: "11,901,484,239,480,000,000,000,000". */
export function wei(w) {
  return group.format(BigInt(w));
}

/** 0x1234…cdef */
export function shortHex(h, keep = 6) {
  if (typeof h !== 'string' || h.length <= 2 + keep * 2 + 1) return h;
  return `${h.slice(0, 2 + keep)}…${h.slice(-keep)}`;
}
