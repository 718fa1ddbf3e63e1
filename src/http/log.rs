//! Python's request log: `address - - [date] message` on stderr, with
//! control characters escaped (gh-100001: a request line could otherwise
//! write terminal escapes into an operator's terminal).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Python's `_control_char_table`: C0 and C1 controls and DEL become
/// `\xNN`, and a backslash `\\`, so that an escape in the log is never
/// ambiguous.
pub(crate) fn escape_controls(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Python's `log_date_time_string`: `03/Dec/2026 06:35:01`. In UTC, where
/// Python uses local time: the library has no time-zone database.
pub(crate) fn log_date_time_string(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{day:02}/{}/{year:04} {:02}:{:02}:{:02}",
        MONTHS[month as usize - 1],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (y, m, d).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn controls_escaped_as_python() {
        assert_eq!(
            escape_controls("GET /\x1b[31mred\\ \u{85}"),
            "GET /\\x1b[31mred\\\\ \\x85"
        );
    }

    #[test]
    fn date_format() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_279_701);
        assert_eq!(log_date_time_string(t), "03/Dec/2026 06:35:01");
        assert_eq!(log_date_time_string(UNIX_EPOCH), "01/Jan/1970 00:00:00");
    }
}
