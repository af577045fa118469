//! Human-readable durations (`10ms`, `1s`, `5m`, `24h`) and sizes (`64MiB`,
//! `512KiB`, `1000`), parsed with `humantime` and `bytesize`, used everywhere a
//! user writes a timeout, an interval or a limit.

use std::time::Duration;

/// Parses a duration such as `10ms`, `1s`, `1m30s`, `24h`. A bare number is
/// rejected: a unit is always required, so `timeout: 30` cannot silently mean
/// 30 ns or 30 s.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?}: {e} (write e.g. 10ms, 1s, 5m, 24h)"))
}

/// Parses a size in bytes: `64MiB`, `512KiB`, `1GiB`, `10MB` or a plain number
/// of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| format!("invalid size {text:?}: {e} (write e.g. 64MiB, 512KiB, 1048576)"))
}

/// Formats a byte count the way a user writes it (`64.0 MiB`).
pub fn format_size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// Formats a duration compactly (`1.2ms`, `30s`).
pub fn format_duration(duration: Duration) -> String {
    if duration < Duration::from_millis(1) {
        format!("{}µs", duration.as_micros())
    } else if duration < Duration::from_secs(1) && !duration.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{:.1}ms", duration.as_secs_f64() * 1e3)
    } else {
        humantime::format_duration(Duration::from_millis(duration.as_millis() as u64)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("30").unwrap_err().contains("invalid duration \"30\""));
    }

    #[test]
    fn durations_format_as_written() {
        assert_eq!(format_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(format_duration(Duration::from_micros(20)), "20µs");
    }

    #[test]
    fn sizes_accept_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").unwrap_err().contains("invalid size \"lots\""));
    }
}
