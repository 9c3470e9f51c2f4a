//! Rule matching: anchored patterns, first match in file order wins. Labels and inboxes are few
//! and events are many, so each distinct label is matched once and the answer reused.

use rustc_hash::FxHashMap as HashMap;

use crate::config::Rule;

/// The index of the first rule whose pattern matches any of `candidates` whole.
pub fn first_match(rules: &[Rule], candidates: &[&str]) -> Option<usize> {
    rules
        .iter()
        .position(|r| candidates.iter().any(|c| r.is_match(c)))
}

/// Every rule that matches (for `check`'s "matched by two rules" report).
pub fn all_matches(rules: &[Rule], candidates: &[&str]) -> Vec<usize> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| candidates.iter().any(|c| r.is_match(c)))
        .map(|(i, _)| i)
        .collect()
}

/// Matches labels to task names, once per distinct label.
pub struct LabelMatcher<'a> {
    rules: &'a [Rule],
    cache: HashMap<String, Option<usize>>,
}

impl<'a> LabelMatcher<'a> {
    pub fn new(rules: &'a [Rule]) -> LabelMatcher<'a> {
        LabelMatcher {
            rules,
            cache: HashMap::default(),
        }
    }

    pub fn task(&mut self, label: &str) -> Option<&'a str> {
        let rules = self.rules;
        let idx = match self.cache.get(label) {
            Some(i) => *i,
            None => {
                let i = first_match(rules, &[label]);
                self.cache.insert(label.to_string(), i);
                i
            }
        };
        idx.map(|i| rules[i].name.as_str())
    }

    /// How many distinct labels were matched (= regex evaluations per rule at most).
    pub fn distinct(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, p: &str) -> Rule {
        Rule::new(name, p, 1).unwrap()
    }

    #[test]
    fn anchored_first_match_wins() {
        let rules = vec![
            rule("In", "LOGGED_IN"),
            rule("Away", "Break|Lunch"),
            rule("Any", ".*"),
        ];
        let mut m = LabelMatcher::new(&rules);
        assert_eq!(m.task("LOGGED_IN"), Some("In"));
        assert_eq!(m.task("LOGGED_IN_X"), Some("Any"));
        assert_eq!(m.task("Lunch"), Some("Away"));
        assert_eq!(m.task("Lunchtime"), Some("Any"));
        let strict = vec![rule("In", "LOGGED_IN")];
        assert_eq!(LabelMatcher::new(&strict).task("LOGGED_IN_X"), None);
        // Inboxes: id or name, whole.
        let ws = vec![
            rule("CS", "BBW|Customer_Support"),
            rule("All", ".*Support.*"),
        ];
        assert_eq!(first_match(&ws, &["id1", "Customer_Support"]), Some(0));
        assert_eq!(all_matches(&ws, &["id1", "Customer_Support"]), vec![0, 1]);
        assert_eq!(first_match(&ws, &["BBWx", "Billing"]), None);
    }
}
