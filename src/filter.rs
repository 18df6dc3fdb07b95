//! The word filter: listed words and phrases are masked with `*`, one per character.
//!
//! Matching is ASCII case-insensitive and on word boundaries (a listed "ass" masks "ass" but
//! leaves "class" alone), with aho-corasick so the cost does not grow with the list.

use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// A compiled word list; empty when no list is configured.
#[derive(Clone, Default)]
pub struct WordFilter {
    matcher: Option<AhoCorasick>,
}

impl WordFilter {
    /// Builds a filter from words; blank lines and lines starting with `#` are skipped.
    pub fn new<I, S>(words: I) -> Result<Self, aho_corasick::BuildError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let words: Vec<String> = words
            .into_iter()
            .map(|w| w.as_ref().trim().to_owned())
            .filter(|w| !w.is_empty() && !w.starts_with('#'))
            .collect();
        if words.is_empty() {
            return Ok(Self::default());
        }
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)?;
        Ok(Self {
            matcher: Some(matcher),
        })
    }

    /// Reads `WORD_FILTER_FILE`.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read word filter {}: {e}", path.display()))?;
        Ok(Self::new(text.lines())?)
    }

    /// The text with every listed word masked.
    pub fn apply(&self, text: &str) -> String {
        let Some(matcher) = &self.matcher else {
            return text.to_owned();
        };
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for m in matcher.find_iter(text) {
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            let bounded = !before.is_some_and(char::is_alphanumeric)
                && !after.is_some_and(char::is_alphanumeric);
            if !bounded {
                continue;
            }
            out.push_str(&text[last..m.start()]);
            out.extend(std::iter::repeat_n(
                '*',
                text[m.start()..m.end()].chars().count(),
            ));
            last = m.end();
        }
        out.push_str(&text[last..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::WordFilter;

    #[test]
    fn masks_whole_words_case_insensitively() {
        let f = WordFilter::new(["darn", "heck it", "# comment", ""]).unwrap();
        assert_eq!(f.apply("Darn, HECK IT now"), "****, ******* now");
        assert_eq!(f.apply("darning"), "darning");
        assert_eq!(f.apply("nothing here"), "nothing here");
    }

    #[test]
    fn empty_list_changes_nothing() {
        let f = WordFilter::new(Vec::<String>::new()).unwrap();
        assert_eq!(f.apply("darn"), "darn");
    }
}
