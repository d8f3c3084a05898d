//! The executions list's filters beyond pipeline and status: the trigger type and when
//! the execution was created (a recent period, or from/to times in UTC). They are
//! query parameters, so a filtered list is a permalink, and the store applies them
//! (so pages stay full and pagination works).

use gennaker_store::ExecutionQuery;
use serde::Deserialize;

use super::format::url_component;
use crate::error::ApiError;

/// The recent periods offered: (value, label, milliseconds).
pub(crate) const PERIODS: &[(&str, &str, i64)] = &[
    ("1h", "Last hour", 3_600_000),
    ("24h", "Last 24 hours", 86_400_000),
    ("7d", "Last 7 days", 7 * 86_400_000),
    ("30d", "Last 30 days", 30 * 86_400_000),
];

/// The query parameters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MoreFilters {
    /// Trigger type (`manual`, `cron`, `webhook`…); empty: any.
    #[serde(default)]
    trigger: String,
    /// A recent period (`24h`); empty: any time.
    #[serde(default)]
    within: String,
    /// Created at or after (`2026-01-31T14:05` or `2026-01-31`, UTC).
    #[serde(default)]
    from: String,
    /// Created before (same forms; a date alone means the end of that day).
    #[serde(default)]
    to: String,
}

/// The filters as the form shows them again.
#[derive(Debug, Default)]
pub(crate) struct FiltersView {
    /// The trigger types to choose from.
    pub triggers: Vec<&'static str>,
    /// The chosen one.
    pub trigger: String,
    /// The periods to choose from: (value, label).
    pub periods: Vec<(&'static str, &'static str)>,
    /// The chosen one.
    pub within: String,
    /// From, as entered.
    pub from: String,
    /// To, as entered.
    pub to: String,
}

/// The trigger types an execution can have.
fn trigger_types() -> Vec<&'static str> {
    let mut types = vec!["manual"];
    types.extend(gennaker_core::TRIGGER_TYPES.iter().copied());
    types
}

/// A time of the form, in epoch milliseconds (UTC); `end_of_day` for a bare date
/// used as an upper bound.
fn parse_time(field: &str, text: &str, end_of_day: bool) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "the filter '{field}' ('{text}') is not a time: use YYYY-MM-DDTHH:MM or YYYY-MM-DD, in UTC"
        ))
    };
    // A bare date (jiff would read it as midnight too) may mean the end of that day.
    let civil = if text.contains(['T', 't', ' ']) {
        text.parse::<jiff::civil::DateTime>().map_err(|_| bad())?
    } else {
        let date = text.parse::<jiff::civil::Date>().map_err(|_| bad())?;
        let start = date.to_datetime(jiff::civil::Time::midnight());
        if end_of_day {
            start
                .checked_add(jiff::Span::new().days(1))
                .map_err(|_| bad())?
        } else {
            start
        }
    };
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|zoned| zoned.timestamp().as_millisecond())
        .map_err(|_| bad())
}

impl MoreFilters {
    /// Applies the filters to `query` (at `now`); returns what the form shows and the
    /// URL query that keeps them (`&trigger=…&within=…&from=…&to=…`).
    pub(crate) fn apply(
        &self,
        query: &mut ExecutionQuery,
        now: i64,
    ) -> Result<(FiltersView, String), ApiError> {
        let trigger = self.trigger.trim().to_lowercase();
        let triggers = trigger_types();
        if !trigger.is_empty() {
            if !triggers.contains(&trigger.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown trigger type '{trigger}'; choose one of {}",
                    triggers.join(", ")
                )));
            }
            query.trigger_type = Some(trigger.clone());
        }
        let within = self.within.trim().to_owned();
        if !within.is_empty() {
            let (_, _, millis) = PERIODS
                .iter()
                .find(|(value, _, _)| *value == within)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unknown period '{within}'; choose one of 1h, 24h, 7d, 30d"
                    ))
                })?;
            query.created_after = Some(now - millis);
        }
        let from = self.from.trim().to_owned();
        if !from.is_empty() {
            let after = parse_time("from", &from, false)?;
            query.created_after = Some(query.created_after.map_or(after, |a| a.max(after)));
        }
        let to = self.to.trim().to_owned();
        if !to.is_empty() {
            query.created_before = Some(parse_time("to", &to, true)?);
        }
        let url = format!(
            "&trigger={}&within={}&from={}&to={}",
            url_component(&trigger),
            url_component(&within),
            url_component(&from),
            url_component(&to)
        );
        let view = FiltersView {
            triggers,
            trigger,
            periods: PERIODS.iter().map(|(v, l, _)| (*v, *l)).collect(),
            within,
            from,
            to,
        };
        Ok((view, url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(trigger: &str, within: &str, from: &str, to: &str) -> MoreFilters {
        MoreFilters {
            trigger: trigger.into(),
            within: within.into(),
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn filters_go_into_the_query_and_the_permalink() {
        let mut query = ExecutionQuery::default();
        let now = 1_800_000_000_000;
        let (view, url) = filters("Cron", "24h", "", "2027-01-15")
            .apply(&mut query, now)
            .unwrap();
        assert_eq!(query.trigger_type.as_deref(), Some("cron"));
        assert_eq!(query.created_after, Some(now - 86_400_000));
        // A bare date as the upper bound: the end of that day (UTC).
        assert_eq!(query.created_before, Some(1_800_057_600_000));
        assert_eq!(url, "&trigger=cron&within=24h&from=&to=2027-01-15");
        assert_eq!(view.trigger, "cron");
        assert!(view.triggers.contains(&"webhook"));

        let mut query = ExecutionQuery::default();
        filters("", "", "2027-01-15T10:30", "")
            .apply(&mut query, now)
            .unwrap();
        assert_eq!(query.created_after, Some(1_800_009_000_000));
        assert_eq!(query.trigger_type, None);
    }

    #[test]
    fn bad_filters_say_what_to_enter() {
        let mut query = ExecutionQuery::default();
        let err = filters("carrier-pigeon", "", "", "")
            .apply(&mut query, 0)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown trigger type 'carrier-pigeon'"),
            "{err}"
        );
        let err = filters("", "", "yesterday", "")
            .apply(&mut query, 0)
            .unwrap_err();
        assert!(err.to_string().contains("YYYY-MM-DDTHH:MM"), "{err}");
        let err = filters("", "2w", "", "").apply(&mut query, 0).unwrap_err();
        assert!(err.to_string().contains("unknown period '2w'"), "{err}");
    }
}
