//! The bits of SDMX-ML 2.1 every message shares: namespaces, escaping, the header.

use crate::layout::{rfc3339_ms, sdmx_id};

/// SDMX-ML 2.1 message namespace.
pub const NS_MESSAGE: &str = "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/message";
/// SDMX-ML 2.1 common namespace.
pub const NS_COMMON: &str = "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/common";
/// SDMX-ML 2.1 structure namespace.
pub const NS_STRUCTURE: &str = "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/structure";
/// SDMX-ML 2.1 structure-specific data namespace.
pub const NS_STRUCTURE_SPECIFIC: &str =
    "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/data/structurespecific";
/// SDMX-ML 2.1 generic data namespace.
pub const NS_GENERIC: &str = "http://www.sdmx.org/resources/sdmxml/schemas/v2_1/data/generic";
/// XML Schema instance namespace.
pub const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Appends `s` escaped for XML text and double-quoted attribute values. Characters XML 1.0
/// cannot carry at all (control characters other than tab and line breaks) become U+FFFD.
pub fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if u32::from(c) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// ` name="value"`, escaped.
pub fn attr(name: &str, value: &str, out: &mut String) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape(value, out);
    out.push('"');
}

/// `<common:Name xml:lang="en">name</common:Name>`.
pub fn name(text: &str, out: &mut String) {
    out.push_str("<common:Name xml:lang=\"en\">");
    escape(text, out);
    out.push_str("</common:Name>");
}

/// The header elements every message starts with: ID, Test, Prepared, Sender.
pub fn header_start(message_id: &str, prepared_ms: i64, sender: &str, out: &mut String) {
    out.push_str("<message:Header><message:ID>");
    escape(&sdmx_id(message_id), out);
    out.push_str("</message:ID><message:Test>false</message:Test><message:Prepared>");
    escape(&rfc3339_ms(prepared_ms), out);
    out.push_str("</message:Prepared><message:Sender");
    attr("id", &sdmx_id(sender), out);
    out.push_str("/>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_markup_and_control_characters_out() {
        let mut out = String::new();
        escape("a<b>&\"c'\u{1}\n", &mut out);
        assert_eq!(out, "a&lt;b&gt;&amp;&quot;c&apos;\u{FFFD}&#10;");
    }
}
