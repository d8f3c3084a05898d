//! "Did you mean …?" for misspelled names.

/// The candidate closest to `input`: a case-insensitive match first, else the smallest
/// Damerau-Levenshtein distance within a third of the input's length (at least 2) and
/// shorter than the input itself (so "9" never suggests "1").
pub fn closest<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = input.to_lowercase();
    let len = input.chars().count();
    let limit = (len / 3).max(2).min(len.saturating_sub(1));
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let cand_lower = candidate.to_lowercase();
        if cand_lower == lower {
            return Some(candidate);
        }
        let distance = strsim::damerau_levenshtein(&lower, &cand_lower);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// `"; did you mean 'x'?"`, or nothing.
pub(crate) fn did_you_mean<'a, I>(input: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    did_you_mean_phrase(closest(input, candidates))
}

/// `"; did you mean 'x'?"` for a suggestion already found, or nothing.
pub(crate) fn did_you_mean_phrase(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |c| format!("; did you mean '{c}'?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_close_names() {
        let names = ["wait", "webhook", "manualJudgment"];
        assert_eq!(closest("wiat", names), Some("wait"));
        assert_eq!(closest("manualjudgement", names), Some("manualJudgment"));
        assert_eq!(closest("Wait", names), Some("wait"));
        assert_eq!(closest("zzzzzzzz", names), None);
    }
}
