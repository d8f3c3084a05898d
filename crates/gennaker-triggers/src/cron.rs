//! Quartz cron schedules: `sec min hour day-of-month month day-of-week [year]`, with
//! `?`, `L`, `W`, `#`, names (`MON-FRI`, `JAN`) and Quartz's day-of-week numbering
//! (1 = Sunday), as Spinnaker stores them. Parsing and stepping are croner's; this
//! module only configures it the Quartz way and adds the time zone.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed cron trigger schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
}

impl Schedule {
    /// Parses a Quartz expression; `zone` is an IANA name (`Europe/Berlin`), `None` the
    /// default zone. A Unix five-field expression is refused, as Spinnaker refuses it.
    pub fn parse(expression: &str, zone: Option<&str>, default_zone: &str) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            return Err(format!(
                "cronExpression '{expression}' has {fields} fields; a Quartz expression has 6 or 7: \
                 seconds minutes hours day-of-month month day-of-week [year], e.g. '0 0 9 ? * MON-FRI'"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Optional)
            .alternative_weekdays(true)
            .sloppy_ranges(true)
            .build()
            .parse(expression)
            .map_err(|err| format!("cronExpression '{expression}' is not valid: {err}"))?;
        let name = zone
            .map(str::trim)
            .filter(|z| !z.is_empty())
            .unwrap_or(default_zone);
        let zone = TimeZone::get(name).map_err(|err| {
            format!("timeZone '{name}' is not a known time zone ({err}); use an IANA name like 'UTC' or 'Europe/Berlin'")
        })?;
        Ok(Self { cron, zone })
    }

    /// The latest tick at or before `now` (epoch ms), if any.
    pub fn latest_at_or_before(&self, now: i64) -> Option<i64> {
        let now = Timestamp::from_millisecond(now)
            .ok()?
            .to_zoned(self.zone.clone());
        let tick = self.cron.find_previous_occurrence(&now, true).ok()?;
        Some(tick.timestamp().as_millisecond())
    }

    /// The first tick after `now` (epoch ms), if any.
    pub fn next_after(&self, now: i64) -> Option<i64> {
        let now = Timestamp::from_millisecond(now)
            .ok()?
            .to_zoned(self.zone.clone());
        let tick = self.cron.find_next_occurrence(&now, false).ok()?;
        Some(tick.timestamp().as_millisecond())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn quartz_fields_and_specials_are_understood() {
        let weekdays = Schedule::parse("0 30 9 ? * MON-FRI", None, "UTC").unwrap();
        // Saturday 2026-01-03 → the next tick is Monday 09:30:00.
        assert_eq!(
            weekdays.next_after(at("2026-01-03T12:00:00Z")),
            Some(at("2026-01-05T09:30:00Z"))
        );
        let last_day = Schedule::parse("0 0 12 L * ?", None, "UTC").unwrap();
        assert_eq!(
            last_day.next_after(at("2026-02-10T00:00:00Z")),
            Some(at("2026-02-28T12:00:00Z"))
        );
        let nearest_weekday = Schedule::parse("0 0 8 15W * ?", None, "UTC").unwrap();
        // 2026-08-15 is a Saturday: the nearest weekday is Friday the 14th.
        assert_eq!(
            nearest_weekday.next_after(at("2026-08-01T00:00:00Z")),
            Some(at("2026-08-14T08:00:00Z"))
        );
        // Quartz numbers days from Sunday = 1: 6#2 is the second Friday.
        let second_friday = Schedule::parse("0 0 10 ? * 6#2 *", None, "UTC").unwrap();
        assert_eq!(
            second_friday.next_after(at("2026-03-01T00:00:00Z")),
            Some(at("2026-03-13T10:00:00Z"))
        );
        let every_ten_seconds = Schedule::parse("0/10 * * * * ?", None, "UTC").unwrap();
        assert_eq!(
            every_ten_seconds.latest_at_or_before(at("2026-03-01T00:00:25Z")),
            Some(at("2026-03-01T00:00:20Z"))
        );
    }

    #[test]
    fn the_time_zone_moves_the_ticks() {
        let berlin = Schedule::parse("0 0 9 * * ?", Some("Europe/Berlin"), "UTC").unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
        assert_eq!(
            berlin.next_after(at("2026-01-10T00:00:00Z")),
            Some(at("2026-01-10T08:00:00Z"))
        );
        assert_eq!(
            berlin.next_after(at("2026-07-10T00:00:00Z")),
            Some(at("2026-07-10T07:00:00Z"))
        );
        let utc = Schedule::parse("0 0 9 * * ?", None, "UTC").unwrap();
        assert_eq!(
            utc.next_after(at("2026-07-10T00:00:00Z")),
            Some(at("2026-07-10T09:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        let unix = Schedule::parse("*/5 * * * *", None, "UTC").unwrap_err();
        assert!(
            unix.contains("has 5 fields; a Quartz expression has 6 or 7"),
            "{unix}"
        );
        let bad = Schedule::parse("0 61 * * * ?", None, "UTC").unwrap_err();
        assert!(bad.contains("is not valid"), "{bad}");
        let zone = Schedule::parse("0 0 9 * * ?", Some("Mars/Olympus"), "UTC").unwrap_err();
        assert!(
            zone.contains("timeZone 'Mars/Olympus' is not a known time zone"),
            "{zone}"
        );
    }
}
