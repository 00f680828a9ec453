//! Timestamps and event ids, without a date-time dependency. The clock is core's
//! [`mcp_enterprise_core::clock`], re-exported from the crate root.

use std::time::Duration;

/// [`rfc3339_millis`] as a JSON string appended to `buf`.
pub(crate) fn write_rfc3339_millis(since_epoch: Duration, buf: &mut Vec<u8>) {
    buf.push(b'"');
    buf.extend_from_slice(rfc3339_millis(since_epoch).as_bytes());
    buf.push(b'"');
}

/// RFC 3339 UTC with milliseconds: `2026-11-25T09:30:00.123Z`.
pub(crate) fn rfc3339_millis(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let millis = since_epoch.subsec_millis();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        return format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60);
    }
    // fixed width: digits written directly (this runs once per record)
    fn digits(out: &mut String, n: u64, width: u32) {
        for i in (0..width).rev() {
            out.push(char::from(b'0' + u8::try_from(n / 10u64.pow(i) % 10).unwrap_or(0)));
        }
    }
    let mut out = String::with_capacity(24);
    digits(&mut out, y, 4);
    for (value, sep) in [(m, '-'), (d, '-'), (rem / 3600, 'T'), (rem % 3600 / 60, ':'), (rem % 60, ':')] {
        out.push(sep);
        digits(&mut out, value, 2);
    }
    out.push('.');
    digits(&mut out, u64::from(millis), 3);
    out.push('Z');
    out
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Howard Hinnant's algorithm, shifted so that the era starts on 0000-03-01
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A UUIDv7 (RFC 9562): milliseconds since the epoch then randomness, so ids sort by time.
pub(crate) fn uuid_v7(since_epoch: Duration) -> String {
    uuid_v7_text(since_epoch).as_str().to_owned()
}

/// A UUIDv7's text kept inline (no allocation per record).
#[derive(Debug, Clone, Copy)]
pub(crate) struct UuidText([u8; 36]);

impl UuidText {
    pub(crate) fn as_str(&self) -> &str {
        // hex digits and hyphens only
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// [`uuid_v7`] without the allocation.
pub(crate) fn uuid_v7_text(since_epoch: Duration) -> UuidText {
    let mut bytes = [0u8; 16];
    bytes[6..].copy_from_slice(&random_10());
    let ms = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70 | (bytes[6] & 0x0f);
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 36];
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[at] = b'-';
            at += 1;
        }
        out[at] = HEX[usize::from(b >> 4)];
        out[at + 1] = HEX[usize::from(b & 0xf)];
        at += 2;
    }
    UuidText(out)
}

/// Ten random bytes, from a per-thread pool refilled by the system RNG 64 ids at a time (one RNG
/// call per record was a measurable share of a record's cost). A failing RNG leaves zeros; the
/// time prefix and the chain sequence keep ids distinct.
fn random_10() -> [u8; 10] {
    const POOL: usize = 640;
    thread_local! {
        static RANDOM: std::cell::RefCell<([u8; POOL], usize)> = const { std::cell::RefCell::new(([0; POOL], POOL)) };
    }
    RANDOM.with(|cell| {
        let mut pool = cell.borrow_mut();
        if pool.1 + 10 > POOL {
            let _ = aws_lc_rs::rand::fill(&mut pool.0);
            pool.1 = 0;
        }
        let mut out = [0u8; 10];
        let at = pool.1;
        out.copy_from_slice(&pool.0[at..at + 10]);
        // used bytes are not kept
        pool.0[at..at + 10].fill(0);
        pool.1 += 10;
        out
    })
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
    }
    // hex digits only
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339_millis(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(Duration::from_millis(951_782_400_007)), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339_millis(Duration::from_millis(1_795_599_045_123)), "2026-11-25T09:30:45.123Z");
        assert_eq!(rfc3339_millis(Duration::from_secs(4_102_444_799)), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn uuid_v7_shape_and_order() {
        let a = uuid_v7(Duration::from_millis(1_000));
        let b = uuid_v7(Duration::from_millis(2_000));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert!(a < b);
        assert_ne!(uuid_v7(Duration::from_millis(1_000)), a);
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as records write it.
pub(crate) fn parse_rfc3339_millis(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 || y < 1970 {
        return None;
    }
    // days from civil (Howard Hinnant), inverse of `civil_from_days`
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn parse_inverts_format() {
        for ms in [0u64, 951_782_400_007, 1_795_599_045_123, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339_millis(&rfc3339_millis(Duration::from_millis(ms))), Some(ms));
        }
        assert_eq!(parse_rfc3339_millis("2026-11-25T09:30:45Z"), None);
        assert_eq!(parse_rfc3339_millis("2026-13-25T09:30:45.000Z"), None);
    }
}
