//! Strict calendar dates and SDMX time periods.

use time::{Date, Month};

/// Earliest year accepted in dates and time periods.
pub const MIN_YEAR: i32 = 1900;
/// Latest year accepted in dates and time periods.
pub const MAX_YEAR: i32 = 2100;

/// The days an SDMX time period covers, both ends inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeriodRange {
    /// First day of the period.
    pub start: Date,
    /// Last day of the period.
    pub end: Date,
}

/// Parses exactly `digits` ASCII digits.
fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn year(s: &str) -> Option<i32> {
    let y = i32::try_from(digits(s, 4)?).ok()?;
    (MIN_YEAR..=MAX_YEAR).contains(&y).then_some(y)
}

fn month(s: &str) -> Option<Month> {
    let m = u8::try_from(digits(s, 2)?).ok()?;
    Month::try_from(m).ok()
}

/// Parses a strict `YYYY-MM-DD` calendar date (years 1900 to 2100).
pub fn parse_date(s: &str) -> Option<Date> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let day = u8::try_from(digits(d, 2)?).ok()?;
    Date::from_calendar_date(year(y)?, month(m)?, day).ok()
}

/// The period from the first day of month `first` to the last day of month `last` of `y`.
fn months(y: i32, first: u8, last: u8) -> Option<PeriodRange> {
    let first = Month::try_from(first).ok()?;
    let last = Month::try_from(last).ok()?;
    Some(PeriodRange {
        start: Date::from_calendar_date(y, first, 1).ok()?,
        end: Date::from_calendar_date(y, last, last.length(y)).ok()?,
    })
}

/// Parses an SDMX time period: `2024` (year), `2024-S1` (half), `2024-Q3` (quarter),
/// `2024-05` (month) or `2024-05-17` (day); years 1900 to 2100.
pub fn parse_time_period(s: &str) -> Option<PeriodRange> {
    match s.len() {
        4 => months(year(s)?, 1, 12),
        7 => {
            let (y, rest) = s.split_once('-')?;
            let y = year(y)?;
            if let Some(q) = rest.strip_prefix('Q') {
                let q = u8::try_from(digits(q, 1)?).ok()?;
                if !(1..=4).contains(&q) {
                    return None;
                }
                months(y, 3 * q - 2, 3 * q)
            } else if let Some(h) = rest.strip_prefix('S') {
                let h = u8::try_from(digits(h, 1)?).ok()?;
                if !(1..=2).contains(&h) {
                    return None;
                }
                months(y, 6 * h - 5, 6 * h)
            } else {
                let m = u8::from(month(rest)?);
                months(y, m, m)
            }
        }
        10 => parse_date(s).map(|d| PeriodRange { start: d, end: d }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn dates_are_strict() {
        assert_eq!(parse_date("2024-05-17"), Some(date!(2024 - 05 - 17)));
        assert_eq!(parse_date("2024-02-29"), Some(date!(2024 - 02 - 29)));
        for bad in [
            "2023-02-29",
            "2024-5-17",
            "2024-05-7",
            "24-05-17",
            "2024-13-01",
            "2024-00-10",
            "2024-05-00",
            "2024/05/17",
            "2024-05-17T00:00",
            "+2024-05-17",
            "1899-12-31",
            "2101-01-01",
            "",
            "２０２４-05-17",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn time_periods() {
        let cases = [
            ("2024", date!(2024 - 01 - 01), date!(2024 - 12 - 31)),
            ("2024-Q1", date!(2024 - 01 - 01), date!(2024 - 03 - 31)),
            ("2024-Q3", date!(2024 - 07 - 01), date!(2024 - 09 - 30)),
            ("2024-Q4", date!(2024 - 10 - 01), date!(2024 - 12 - 31)),
            ("2024-S1", date!(2024 - 01 - 01), date!(2024 - 06 - 30)),
            ("2024-S2", date!(2024 - 07 - 01), date!(2024 - 12 - 31)),
            ("2024-02", date!(2024 - 02 - 01), date!(2024 - 02 - 29)),
            ("2023-02", date!(2023 - 02 - 01), date!(2023 - 02 - 28)),
            ("2024-05-17", date!(2024 - 05 - 17), date!(2024 - 05 - 17)),
            ("1900", date!(1900 - 01 - 01), date!(1900 - 12 - 31)),
            ("2100", date!(2100 - 01 - 01), date!(2100 - 12 - 31)),
        ];
        for (text, start, end) in cases {
            assert_eq!(
                parse_time_period(text),
                Some(PeriodRange { start, end }),
                "{text}"
            );
        }
        for bad in [
            "",
            "24",
            "1899",
            "2101",
            "2024-Q0",
            "2024-Q5",
            "2024-S0",
            "2024-S3",
            "2024-13",
            "2024-q3",
            "2024-W01",
            "2024-5",
            "2024-02-30",
            "2024 ",
            "abcd",
        ] {
            assert_eq!(parse_time_period(bad), None, "{bad}");
        }
    }
}
