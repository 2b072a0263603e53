//! JSON key naming: XSD element names ⇄ JSON keys, configurable per backend.

use serde::Deserialize;

/// How XSD names become JSON keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JsonNaming {
    /// `Unit_Price` → `unitPrice`, `ItemNo` → `itemNo`, `SensorID` → `sensorID`.
    #[default]
    CamelCase,
    /// Keys are the XSD names as written (after `_xHHHH_` decoding).
    Original,
}

impl JsonNaming {
    /// The JSON key for an XSD name.
    pub(crate) fn apply(self, xsd_name: &str) -> String {
        let decoded = decode_xml_name(xsd_name);
        match self {
            JsonNaming::Original => decoded,
            JsonNaming::CamelCase => camel_case(&decoded),
        }
    }
}

/// Decodes the `_xHHHH_` escapes that .NET and NAV put in XML names (`_x0033_rd` → `3rd`).
pub(crate) fn decode_xml_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(pos) = rest.find("_x") {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let decoded = tail
            .get(2..6)
            .filter(|_| tail.as_bytes().get(6) == Some(&b'_'))
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .and_then(char::from_u32);
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[7..];
            }
            None => {
                out.push_str("_x");
                rest = &tail[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Lower camel case: words split on `_`, `-`, `.` and spaces; a leading run of capitals is
/// lowered as one word (`URLPath` → `urlPath`, `ID` → `id`).
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, word) in name.split(['_', '-', '.', ' ']).filter(|w| !w.is_empty()).enumerate() {
        if i == 0 {
            out.push_str(&lower_leading_caps(word));
        } else {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        }
    }
    if out.is_empty() { name.to_string() } else { out }
}

fn lower_leading_caps(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let run = chars.iter().take_while(|c| c.is_uppercase()).count();
    // In "URLPath" the 'P' starts the next word, so it keeps its capital.
    let lower_upto = if run > 1 && run < chars.len() && chars[run].is_lowercase() { run - 1 } else { run };
    let mut out = String::with_capacity(word.len());
    for (i, c) in chars.iter().enumerate() {
        if i < lower_upto.max(1) {
            out.extend(c.to_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_covers_erp_names() {
        let n = JsonNaming::CamelCase;
        assert_eq!(n.apply("ItemNo"), "itemNo");
        assert_eq!(n.apply("No"), "no");
        assert_eq!(n.apply("Unit_Price"), "unitPrice");
        assert_eq!(n.apply("URLPath"), "urlPath");
        assert_eq!(n.apply("ID"), "id");
        assert_eq!(n.apply("SensorID"), "sensorID");
        assert_eq!(n.apply("_x0033_rd_Party_Loader_Type"), "3rdPartyLoaderType");
        assert_eq!(n.apply("ShortcutDimCode_x005B_3_x005D_"), "shortcutDimCode[3]");
        assert_eq!(n.apply("КонтактнаяИнформация"), "контактнаяИнформация");
        assert_eq!(n.apply("_"), "_");
    }

    #[test]
    fn original_keeps_names() {
        assert_eq!(JsonNaming::Original.apply("Unit_Price"), "Unit_Price");
        assert_eq!(decode_xml_name("a_x_b_x0041_"), "a_x_bA");
    }
}
