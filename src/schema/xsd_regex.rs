//! XSD regular expressions (`xs:pattern`) in Rust's `regex` syntax: a pure function, so
//! every rule is a row of the table below.

/// An XSD regular expression in Rust's syntax: XSD's name classes (`\i`, `\c`), the common
/// Unicode block names, and `^`/`$`, which are plain characters in XSD.
pub(crate) fn translate(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('i') => out.push_str(r"[\p{L}_:]"),
                Some('I') => out.push_str(r"[^\p{L}_:]"),
                Some('c') => out.push_str(r"[\p{L}\p{N}\p{Mn}._:\-]"),
                Some('C') => out.push_str(r"[^\p{L}\p{N}\p{Mn}._:\-]"),
                Some(p @ ('p' | 'P')) if chars.peek() == Some(&'{') => {
                    let name: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                    let range = match name.as_str() {
                        "IsBasicLatin" => Some(r"\x{0}-\x{7F}"),
                        "IsLatin-1Supplement" => Some(r"\x{80}-\x{FF}"),
                        "IsLatinExtended-A" => Some(r"\x{100}-\x{17F}"),
                        "IsCyrillic" => Some(r"\x{400}-\x{4FF}"),
                        _ => None,
                    };
                    match (range, p) {
                        (Some(r), 'p') => out.push_str(&format!("[{r}]")),
                        (Some(r), _) => out.push_str(&format!("[^{r}]")),
                        (None, _) => out.push_str(&format!("\\{p}{{{name}}}")),
                    }
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push_str(r"\\"),
            },
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            '^' | '$' if !in_class => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xsd_syntax_becomes_rust_syntax() {
        let table = [
            // Name classes.
            (r"\i\c*", r"[\p{L}_:][\p{L}\p{N}\p{Mn}._:\-]*"),
            (r"\I", r"[^\p{L}_:]"),
            (r"\C", r"[^\p{L}\p{N}\p{Mn}._:\-]"),
            // ^ and $ are plain characters in XSD, except as class negation.
            (r"a^b$", r"a\^b\$"),
            (r"[^a-z]", r"[^a-z]"),
            // Unicode blocks Rust does not know by name become ranges.
            (r"\p{IsBasicLatin}+", r"[\x{0}-\x{7F}]+"),
            (r"\P{IsCyrillic}", r"[^\x{400}-\x{4FF}]"),
            // Categories pass through.
            (r"\p{Lu}", r"\p{Lu}"),
            // Other escapes stay, a trailing backslash is a literal one.
            (r"\d{3}-\d{4}", r"\d{3}-\d{4}"),
            ("a\\", r"a\\"),
        ];
        for (xsd, rust) in table {
            assert_eq!(translate(xsd), rust, "{xsd}");
        }
    }

    #[test]
    fn translated_patterns_compile_and_match_as_xsd_means() {
        let re = regex::Regex::new(&format!("^(?:{})$", translate(r"\i\c*"))).expect("compiles");
        assert!(re.is_match("xs:item-1") && !re.is_match("1abc"));
        let re = regex::Regex::new(&format!("^(?:{})$", translate(r"[A-Z]{2}\d+"))).expect("compiles");
        assert!(re.is_match("DE123") && !re.is_match("de123"));
    }
}
