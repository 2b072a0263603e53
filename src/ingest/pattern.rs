//! Sensor-id patterns: `*` matches any run of characters, `?` one character, anything else
//! itself. Two entries of the dictionary may never match the same id, so overlap is decided
//! exactly, not guessed.

/// A compiled sensor-id pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    chars: Vec<char>,
}

impl Pattern {
    /// The pattern as written.
    pub fn new(text: &str) -> Self {
        Pattern { chars: text.chars().collect() }
    }

    /// True when the pattern has no `*` or `?`: a single sensor id.
    pub(crate) fn is_exact(&self) -> bool {
        !self.chars.iter().any(|c| matches!(c, '*' | '?'))
    }

    /// The pattern as written.
    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// Does `id` match?
    pub fn matches(&self, id: &str) -> bool {
        let id: Vec<char> = id.chars().collect();
        // Classic two-pointer glob match with backtracking to the last `*`.
        let (p, s) = (&self.chars, &id);
        let (mut i, mut j) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while j < s.len() {
            if i < p.len() && (p[i] == '?' || p[i] == s[j]) {
                i += 1;
                j += 1;
            } else if i < p.len() && p[i] == '*' {
                star = Some((i, j));
                i += 1;
            } else if let Some((si, sj)) = star {
                i = si + 1;
                j = sj + 1;
                star = Some((si, sj + 1));
            } else {
                return false;
            }
        }
        p[i..].iter().all(|c| *c == '*')
    }

    /// Is there an id both patterns match?
    pub fn overlaps(&self, other: &Pattern) -> bool {
        let (a, b) = (&self.chars, &other.chars);
        // memo[i][j]: can a[i..] and b[j..] match a common string?
        let mut memo = vec![vec![None; b.len() + 1]; a.len() + 1];
        fn go(a: &[char], b: &[char], i: usize, j: usize, memo: &mut Vec<Vec<Option<bool>>>) -> bool {
            if let Some(known) = memo[i][j] {
                return known;
            }
            let result = match (a.get(i), b.get(j)) {
                (None, None) => true,
                (Some('*'), _) => go(a, b, i + 1, j, memo) || (j < b.len() && go(a, b, i, j + 1, memo)),
                (_, Some('*')) => go(a, b, i, j + 1, memo) || (i < a.len() && go(a, b, i + 1, j, memo)),
                (Some(x), Some(y)) => (*x == '?' || *y == '?' || x == y) && go(a, b, i + 1, j + 1, memo),
                _ => false,
            };
            memo[i][j] = Some(result);
            result
        }
        go(a, b, 0, 0, &mut memo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let p = Pattern::new("T-1*");
        assert!(p.matches("T-1") && p.matches("T-100") && !p.matches("T-200") && !p.matches("X-100"));
        assert!(Pattern::new("P-??").matches("P-01") && !Pattern::new("P-??").matches("P-001"));
        assert!(Pattern::new("*-vib").matches("press-vib") && !Pattern::new("*-vib").matches("press-vibe"));
        assert!(Pattern::new("a*b*c").matches("a-x-b-y-c") && !Pattern::new("a*b*c").matches("a-c-b"));
        assert!(Pattern::new("T-100").is_exact() && !Pattern::new("T-*").is_exact());
    }

    #[test]
    fn overlap_is_decided_exactly() {
        let cases = [
            ("T-1*", "T-10?", true),
            ("T-1*", "T-2*", false),
            ("T-100", "T-1*", true),
            ("T-100", "T-101", false),
            ("*-vib", "press-*", true),
            ("a?c", "ab", false),
            ("*x", "*y", false),
            ("*", "anything", true),
            ("P-??", "P-1", false),
            ("a*", "*b", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(Pattern::new(a).overlaps(&Pattern::new(b)), want, "{a} vs {b}");
            assert_eq!(Pattern::new(b).overlaps(&Pattern::new(a)), want, "{b} vs {a}");
        }
    }
}
