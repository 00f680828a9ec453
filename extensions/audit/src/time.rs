//! Timestamps and event ids, without a date-time dependency. The clock is core's
//! [`mcp_enterprise_core::clock`], re-exported from the crate root.

use std::time::Duration;

/// [`rfc3339_millis`] as a JSON string appended to `buf` (the same text, written in place).
pub(crate) fn write_rfc3339_millis(since_epoch: Duration, buf: &mut Vec<u8>) {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        buf.push(b'"');
        buf.extend_from_slice(rfc3339_millis(since_epoch).as_bytes());
        buf.push(b'"');
        return;
    }
    // fixed width: `"YYYY-MM-DDTHH:MM:SS.mmmZ"`
    let mut text = *b"\"0000-00-00T00:00:00.000Z\"";
    let mut digits = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    digits(1, 4, y);
    digits(6, 2, m);
    digits(9, 2, d);
    digits(12, 2, rem / 3600);
    digits(15, 2, rem % 3600 / 60);
    digits(18, 2, rem % 60);
    digits(21, 3, u64::from(since_epoch.subsec_millis()));
    buf.extend_from_slice(&text);
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
    let mut quoted = Vec::with_capacity(26);
    write_rfc3339_millis(since_epoch, &mut quoted);
    // digits and separators only
    String::from_utf8(quoted[1..quoted.len() - 1].to_vec()).unwrap_or_default()
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
    let mut out = vec![0u8; bytes.len() * 2];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
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
        assert_eq!(rfc3339_millis(Duration::from_secs(253_402_300_800)), "10000-01-01T00:00:00.000Z");
        // the record's writer, against the formatter
        for ms in (0..400u64).map(|i| i * 7_919_777_777_777 % 253_402_300_800_000).chain([253_402_300_799_999]) {
            let t = Duration::from_millis(ms);
            let (y, m, d) = civil_from_days(t.as_secs() / 86_400);
            let rem = t.as_secs() % 86_400;
            let formatted = format!(
                "\"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z\"",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60,
                t.subsec_millis()
            );
            let mut written = Vec::new();
            write_rfc3339_millis(t, &mut written);
            assert_eq!(String::from_utf8(written).expect("ascii"), formatted);
        }
        assert_eq!(hex(&[0x00, 0x9f, 0xa0, 0xff]), "009fa0ff");
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
