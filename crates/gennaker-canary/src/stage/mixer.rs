//! Pairs the control and experiment series of one metric as Kayenta's
//! `MetricSetMixerService` does: by identical tag sets, a tag set found on one side
//! only paired with nothing, the shorter side padded with NaN at its tail (the judge
//! drops or zeroes NaN per the metric's `nanStrategy`, so a missing side is Nodata).

use std::collections::{BTreeMap, BTreeSet};

use crate::input::{MetricSetPair, PairValues};
use crate::source::MetricSet;

/// One tag set of one metric: the judge's input and where its sides came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mixed {
    /// What the judge compares.
    pub pair: MetricSetPair,
    /// The control series as the source returned it (absent: no series with these tags).
    pub control: Option<MetricSet>,
    /// The experiment series as the source returned it.
    pub experiment: Option<MetricSet>,
}

/// Pairs `control` with `experiment` sets of metric `name`, in tag-set order.
pub(crate) fn mix(name: &str, control: Vec<MetricSet>, experiment: Vec<MetricSet>) -> Vec<Mixed> {
    let mut control: BTreeMap<_, _> = control.into_iter().map(|s| (s.tags.clone(), s)).collect();
    let mut experiment: BTreeMap<_, _> = experiment
        .into_iter()
        .map(|s| (s.tags.clone(), s))
        .collect();
    let tags: BTreeSet<BTreeMap<String, String>> =
        control.keys().chain(experiment.keys()).cloned().collect();
    tags.into_iter()
        .map(|tags| {
            let control = control.remove(&tags);
            let experiment = experiment.remove(&tags);
            let mut control_values = control
                .as_ref()
                .map(|s| s.values.clone())
                .unwrap_or_default();
            let mut experiment_values = experiment
                .as_ref()
                .map(|s| s.values.clone())
                .unwrap_or_default();
            let len = control_values.len().max(experiment_values.len());
            control_values.resize(len, f64::NAN);
            experiment_values.resize(len, f64::NAN);
            Mixed {
                pair: MetricSetPair {
                    name: name.to_owned(),
                    id: None,
                    tags,
                    values: PairValues {
                        control: control_values,
                        experiment: experiment_values,
                    },
                    extra: serde_json::Map::new(),
                },
                control,
                experiment,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tags: &[(&str, &str)], values: &[f64]) -> MetricSet {
        MetricSet {
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            values: values.to_vec(),
            start: jiff::Timestamp::UNIX_EPOCH,
            step_seconds: 60,
            query: "q".to_owned(),
        }
    }

    #[test]
    fn pairs_by_tags_and_pads_the_shorter_side_with_nan_at_the_tail() {
        let mixed = mix(
            "errors",
            vec![
                set(&[("code", "500")], &[1.0, 2.0, 3.0]),
                set(&[("code", "503")], &[4.0]),
            ],
            vec![
                set(&[("code", "500")], &[5.0]),
                set(&[("code", "404")], &[6.0, 7.0]),
            ],
        );
        let tags: Vec<&str> = mixed.iter().map(|m| m.pair.tags["code"].as_str()).collect();
        assert_eq!(tags, ["404", "500", "503"], "every tag set, in order");
        let p500 = &mixed[1].pair.values;
        assert_eq!(p500.control, [1.0, 2.0, 3.0]);
        assert_eq!(p500.experiment[0], 5.0);
        assert!(p500.experiment[1..].iter().all(|v| v.is_nan()));
        let p404 = &mixed[0];
        assert!(p404.control.is_none() && p404.pair.values.control.iter().all(|v| v.is_nan()));
        assert_eq!(p404.pair.values.control.len(), 2);
        assert!(mixed.iter().all(|m| m.pair.name == "errors"));
    }

    #[test]
    fn empty_sets_on_both_sides_give_one_empty_pair() {
        let mixed = mix("latency", vec![set(&[], &[])], vec![set(&[], &[])]);
        assert_eq!(mixed.len(), 1);
        assert!(
            mixed[0].pair.values.control.is_empty() && mixed[0].pair.values.experiment.is_empty()
        );
    }
}
