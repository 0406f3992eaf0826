//! XML well-formedness, without a dependency: one root element, matched and properly nested
//! tags, quoted and unique attributes, valid character and entity references, well-formed
//! comments, processing instructions, CDATA sections and an optional prolog and document type.
//!
//! Entities are not resolved: only the five predefined ones and numeric character references are
//! accepted, so a document that relies on entities declared in its DTD fails (closed). Nesting is
//! tracked on a heap stack, so hostile depth cannot exhaust the call stack.

/// Where and why a text is not well-formed XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct XmlError {
    /// Byte offset of the problem.
    pub at: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// Checks that `text` is one well-formed XML document.
pub fn xml_well_formed(text: &str) -> Result<(), XmlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some((at, _)) = text.char_indices().find(|&(_, c)| !is_xml_char(c)) {
        return Err(XmlError {
            at,
            what: "character not allowed in XML",
        });
    }
    let mut p = Parser {
        b: text.as_bytes(),
        pos: 0,
    };
    if p.starts_with(b"<?xml") && p.byte_at(5).is_some_and(|c| is_space(c) || c == b'?') {
        p.pi(true)?;
    }
    p.misc(true)?;
    if !p.starts_with(b"<") {
        return Err(p.err("no root element"));
    }
    p.root()?;
    p.misc(false)?;
    if p.pos != p.b.len() {
        return Err(p.err("content after the root element"));
    }
    Ok(())
}

fn is_xml_char(c: char) -> bool {
    let u = c as u32;
    matches!(c, '\t' | '\n' | '\r') || (u >= 0x20 && u != 0xfffe && u != 0xffff)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &'static str) -> XmlError {
        XmlError { at: self.pos, what }
    }

    fn byte_at(&self, offset: usize) -> Option<u8> {
        self.b.get(self.pos + offset).copied()
    }

    fn peek(&self) -> Option<u8> {
        self.byte_at(0)
    }

    fn starts_with(&self, prefix: &[u8]) -> bool {
        self.b
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(prefix))
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), XmlError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// Skips whitespace; returns whether any was skipped.
    fn skip_space(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Moves past the next occurrence of `needle`, or fails with `what`.
    fn skip_past(&mut self, needle: &[u8], what: &'static str) -> Result<usize, XmlError> {
        let rest = self.b.get(self.pos..).unwrap_or_default();
        match rest.windows(needle.len()).position(|w| w == needle) {
            Some(i) => {
                let found = self.pos + i;
                self.pos = found + needle.len();
                Ok(found)
            }
            None => Err(self.err(what)),
        }
    }

    fn name(&mut self) -> Result<&'a [u8], XmlError> {
        let start = self.pos;
        if !self.peek().is_some_and(is_name_start) {
            return Err(self.err("expected a name"));
        }
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        Ok(self.b.get(start..self.pos).unwrap_or_default())
    }

    /// Comments, processing instructions, whitespace and (once, before the root, when allowed) a
    /// document type declaration.
    fn misc(&mut self, allow_doctype: bool) -> Result<(), XmlError> {
        let mut doctype_seen = false;
        loop {
            self.skip_space();
            if self.starts_with(b"<!--") {
                self.comment()?;
            } else if self.starts_with(b"<?") {
                self.pi(false)?;
            } else if allow_doctype && !doctype_seen && self.starts_with(b"<!DOCTYPE") {
                self.doctype()?;
                doctype_seen = true;
            } else {
                return Ok(());
            }
        }
    }

    fn comment(&mut self) -> Result<(), XmlError> {
        self.pos += 4;
        self.skip_past(b"--", "unterminated comment")?;
        self.expect(b'>', "'--' inside a comment")
    }

    fn pi(&mut self, declaration: bool) -> Result<(), XmlError> {
        self.pos += 2;
        let target = self.name()?;
        if !declaration && target.eq_ignore_ascii_case(b"xml") {
            return Err(self.err("misplaced XML declaration"));
        }
        if !self.skip_space() && !self.starts_with(b"?>") {
            return Err(self.err("malformed processing instruction"));
        }
        self.skip_past(b"?>", "unterminated processing instruction")?;
        Ok(())
    }

    fn cdata(&mut self) -> Result<(), XmlError> {
        self.pos += 9;
        self.skip_past(b"]]>", "unterminated CDATA section")?;
        Ok(())
    }

    fn doctype(&mut self) -> Result<(), XmlError> {
        self.pos += 9;
        if !self.skip_space() {
            return Err(self.err("malformed document type"));
        }
        let mut depth = 0usize;
        let mut quote: Option<u8> = None;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match (quote, b) {
                (Some(q), _) if b == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(b),
                (None, b'[') => depth += 1,
                (None, b']') => depth = depth.saturating_sub(1),
                (None, b'>') if depth == 0 => return Ok(()),
                _ => {}
            }
        }
        Err(self.err("unterminated document type"))
    }

    fn reference(&mut self) -> Result<(), XmlError> {
        self.pos += 1;
        if self.peek() == Some(b'#') {
            self.pos += 1;
            let hex = self.peek() == Some(b'x');
            if hex {
                self.pos += 1;
            }
            let start = self.pos;
            while self.peek().is_some_and(|c| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            }) {
                self.pos += 1;
            }
            let digits = std::str::from_utf8(self.b.get(start..self.pos).unwrap_or_default())
                .unwrap_or_default();
            let code = u32::from_str_radix(digits, if hex { 16 } else { 10 })
                .ok()
                .and_then(char::from_u32)
                .filter(|&c| is_xml_char(c));
            if digits.is_empty() || digits.len() > 8 || code.is_none() {
                return Err(self.err("invalid character reference"));
            }
        } else {
            let name = self.name()?;
            if !matches!(name, b"lt" | b"gt" | b"amp" | b"apos" | b"quot") {
                return Err(self.err("undeclared entity"));
            }
        }
        self.expect(b';', "reference without ';'")
    }

    /// A start tag; returns the element's name and whether it was empty (`<x/>`).
    fn start_tag(&mut self) -> Result<(&'a [u8], bool), XmlError> {
        self.expect(b'<', "expected a tag")?;
        let name = self.name()?;
        let mut attributes: Vec<&'a [u8]> = Vec::new();
        loop {
            let spaced = self.skip_space();
            if self.starts_with(b"/>") {
                self.pos += 2;
                return Ok((name, true));
            }
            if self.peek() == Some(b'>') {
                self.pos += 1;
                return Ok((name, false));
            }
            if !spaced {
                return Err(self.err("expected whitespace before an attribute"));
            }
            let attr = self.name()?;
            if attributes.contains(&attr) {
                return Err(self.err("duplicate attribute"));
            }
            attributes.push(attr);
            self.skip_space();
            self.expect(b'=', "attribute without '='")?;
            self.skip_space();
            let quote = match self.peek() {
                Some(q @ (b'"' | b'\'')) => q,
                _ => return Err(self.err("unquoted attribute value")),
            };
            self.pos += 1;
            loop {
                match self.peek() {
                    None => return Err(self.err("unterminated attribute value")),
                    Some(b) if b == quote => {
                        self.pos += 1;
                        break;
                    }
                    Some(b'<') => return Err(self.err("'<' in an attribute value")),
                    Some(b'&') => self.reference()?,
                    Some(_) => self.pos += 1,
                }
            }
        }
    }

    /// The root element and everything inside it.
    fn root(&mut self) -> Result<(), XmlError> {
        let (name, empty) = self.start_tag()?;
        if empty {
            return Ok(());
        }
        let mut open: Vec<&'a [u8]> = vec![name];
        while let Some(&innermost) = open.last() {
            if self.pos >= self.b.len() {
                return Err(self.err("unclosed element"));
            }
            if self.starts_with(b"</") {
                self.pos += 2;
                let closing = self.name()?;
                self.skip_space();
                self.expect(b'>', "malformed end tag")?;
                if closing != innermost {
                    return Err(self.err("end tag does not match the open element"));
                }
                open.pop();
            } else if self.starts_with(b"<!--") {
                self.comment()?;
            } else if self.starts_with(b"<![CDATA[") {
                self.cdata()?;
            } else if self.starts_with(b"<?") {
                self.pi(false)?;
            } else if self.starts_with(b"<") {
                let (child, empty) = self.start_tag()?;
                if !empty {
                    open.push(child);
                }
            } else if self.peek() == Some(b'&') {
                self.reference()?;
            } else if self.starts_with(b"]]>") {
                return Err(self.err("']]>' in text"));
            } else {
                self.pos += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_documents_pass() {
        for ok in [
            "<a/>",
            "<?xml version=\"1.0\"?>\n<a x='1' y=\"&amp;&#65;&#x42;\"><b>t &lt; u</b><!-- c --></a>\n",
            "<!DOCTYPE a [<!ELEMENT a ANY>]><a><![CDATA[<not a tag>]]><?pi data?></a>",
            "<ns:a xmlns:ns=\"u\"><ns:b/></ns:a>",
        ] {
            assert_eq!(xml_well_formed(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn malformed_documents_fail() {
        for bad in [
            "",
            "text",
            "<a>",
            "<a></b>",
            "<a><b></a></b>",
            "<a/><b/>",
            "<a x=1/>",
            "<a x='1' x='2'/>",
            "<a>&nbsp;</a>",
            "<a>&#0;</a>",
            "<a><!-- a -- b --></a>",
            "<a>]]></a>",
            "<a x='<'/>",
            "<a/>trailing",
            "<a><?xml version='1.0'?></a>",
            "<1a/>",
            "<a>\u{1}</a>",
        ] {
            assert!(xml_well_formed(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn deep_nesting_is_handled_without_recursion() {
        let depth = 200_000;
        let doc = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        assert_eq!(xml_well_formed(&doc), Ok(()));
        assert!(xml_well_formed(&"<a>".repeat(depth)).is_err());
    }
}
