//! `{…}` placeholders, read one way for every template in the config: a route's mapping
//! (`"{path.no}"`), the values a session sends (`"Bearer {session.token}"`), the data
//! dictionary's body templates (`"{machine}-{sensor}"`) and MQTT topic levels (`{plant}`).
//! This only splits text and says where a brace is wrong; each caller decides which names
//! it knows and says so in its own words.

/// A piece of a template's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Literal text (`{{` and `}}` already read as single braces).
    Text(String),
    /// A placeholder's name, trimmed: `session.token` for `{ session.token }`.
    Var(&'a str),
}

/// Splits `text` into literal text and `{name}` placeholders; `{{` and `}}` stand for
/// literal braces. An unclosed `{`, a stray `}` or an empty `{}` is an error naming the text.
pub(crate) fn split(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        literal.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{{") {
            literal.push('{');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("}}") {
            literal.push('}');
            rest = t;
        } else if tail.starts_with('}') {
            return Err(format!("{text:?} has an unmatched '}}' (write }}}} for a literal brace)"));
        } else {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("{text:?} has an unclosed '{{' (write {{{{ for a literal brace)"))?;
            let name = tail[1..end].trim();
            if name.is_empty() {
                return Err(format!("{text:?} has an empty {{}}; write a name inside the braces"));
            }
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Var(name));
            rest = &tail[end + 1..];
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

/// What a whole value is: one placeholder and nothing else, literal text, or a mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Whole<'a> {
    /// Exactly `{name}`.
    Var(&'a str),
    /// No placeholder (braces written as `{{`/`}}` are text).
    Text(String),
    /// Text and placeholders together.
    Mixed,
}

/// Reads a value that must be either one placeholder or literal text (a route mapping's
/// value, a topic level).
pub(crate) fn whole(text: &str) -> Result<Whole<'_>, String> {
    let pieces = split(text)?;
    Ok(match pieces.as_slice() {
        [] => Whole::Text(String::new()),
        [Piece::Var(name)] => Whole::Var(name),
        [Piece::Text(t)] => Whole::Text(t.clone()),
        _ => Whole::Mixed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_splits_into_literals_and_names_with_escaped_braces() {
        assert_eq!(
            split("Bearer { session.token }-{{x}}").expect("ok"),
            [Piece::Text("Bearer ".into()), Piece::Var("session.token"), Piece::Text("-{x}".into())]
        );
        assert_eq!(split("{machine}{sensor}").expect("ok"), [Piece::Var("machine"), Piece::Var("sensor")]);
        assert!(split("a{b").is_err_and(|e| e.contains("unclosed")));
        assert!(split("a}b").is_err_and(|e| e.contains("unmatched")));
        assert!(split("a{}b").is_err_and(|e| e.contains("empty")));
        assert_eq!(whole("{path.no}"), Ok(Whole::Var("path.no")));
        assert_eq!(whole("plain"), Ok(Whole::Text("plain".into())));
        assert_eq!(whole("{{literal}}"), Ok(Whole::Text("{literal}".into())));
        assert_eq!(whole("x-{path.no}"), Ok(Whole::Mixed));
    }
}
