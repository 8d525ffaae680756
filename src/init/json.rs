//! A small JSON reader for labinit, which has no serde (PID 1 stays lean):
//! enough for Jupyter's runtime files and REST answers (RFC 8259 values).
//! Owns parsing only; what the fields mean is the caller's business.
//!
//! Limits, so hostile input costs little: nesting depth [`MAX_DEPTH`];
//! numbers are kept as their text and read on demand; strings are decoded
//! (escapes, surrogate pairs; a lone surrogate becomes U+FFFD).

/// One JSON value. Object members keep their order; a repeated key keeps
/// every copy and `Json::get` returns the first.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's text, checked against the JSON grammar.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

/// Deepest nesting accepted (arrays and objects).
pub const MAX_DEPTH: usize = 32;

impl Json {
    /// The first member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A number that is a whole number in `u64` (no fraction, no exponent).
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Num(n) => n.parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }
}

/// Parse one JSON text (whitespace around it allowed, nothing after it).
/// Errors name the byte offset. Pure.
pub fn parse(text: &str) -> Result<Json, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("text after the value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("JSON: {what} at byte {}", self.i)
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self, w: &[u8], v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(w) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(self.err("unknown word"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        match self.s.get(self.i) {
            None => Err(self.err("unexpected end")),
            Some(b'n') => self.word(b"null", Json::Null),
            Some(b't') => self.word(b"true", Json::Bool(true)),
            Some(b'f') => self.word(b"false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') | Some(b'{') if depth >= MAX_DEPTH => Err(self.err("nested too deeply")),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat(b']') {
                    return Ok(Json::Arr(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(b']') {
                        return Ok(Json::Arr(items));
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected , or ]"));
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.eat(b'}') {
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a key"));
                    }
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(b':') {
                        return Err(self.err("expected :"));
                    }
                    self.ws();
                    let v = self.value(depth + 1)?;
                    members.push((k, v));
                    self.ws();
                    if self.eat(b'}') {
                        return Ok(Json::Obj(members));
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected , or }"));
                    }
                }
            }
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.s.get(self.i), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        self.eat(b'-');
        match self.s.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("bad number")),
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(self.err("bad fraction"));
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return Err(self.err("bad exponent"));
            }
        }
        // Only ASCII was consumed, so this slice is valid UTF-8.
        Ok(Json::Num(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self.s.get(self.i..self.i + 4).ok_or_else(|| self.err("short \\u escape"))?;
        let h = std::str::from_utf8(h).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("bad \\u escape"))?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.err("bad \\u escape"));
        }
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else { return Err(self.err("unterminated string")) };
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else { return Err(self.err("unterminated string")) };
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    self.i = save; // not a pair: the second escape stands alone
                                    0xFFFD
                                }
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{FFFD}')
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return Err(self.err("control character in string")),
                _ => out.push(b),
            }
        }
        // The input is a &str and escapes add whole characters: valid UTF-8.
        String::from_utf8(out).map_err(|_| self.err("invalid UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let v = parse(r#" {"a": [1, -2.5e3, true, false, null], "b": "x\"\u00e9\ud83d\ude00\n", "a": 0} "#).unwrap();
        let a = v.get("a").unwrap().as_array().unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(a[0].as_u64(), Some(1));
        assert_eq!(a[1], Json::Num("-2.5e3".into()));
        assert_eq!(a[1].as_u64(), None);
        assert_eq!((a[2].as_bool(), a[3].as_bool(), &a[4]), (Some(true), Some(false), &Json::Null));
        assert_eq!(v.get("b").unwrap().as_str(), Some("x\"é😀\n"));
        assert_eq!(v.get("c"), None);
        assert_eq!(parse("[]").unwrap(), Json::Arr(vec![]));
        assert_eq!(parse("{}").unwrap(), Json::Obj(vec![]));
        assert_eq!(parse(r#""\ud800x""#).unwrap(), Json::Str("\u{FFFD}x".into()), "lone surrogate");
        assert_eq!(parse(r#""\ud800\u0041""#).unwrap(), Json::Str("\u{FFFD}A".into()));
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "{a: 1}",
            "01",
            "1.",
            "-",
            "1e",
            "\"abc",
            "\"a\u{1}\"",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"\\u+123\"",
            "tru",
            "nul",
            "[1] 2",
            "[1}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(parse(&deep).unwrap_err().contains("nested too deeply"));
        // A hundred thousand brackets: refused quickly, no stack overflow.
        assert!(parse(&"[".repeat(100_000)).is_err());
    }

    /// Differential, against serde_json (in the build with the `images`
    /// feature): on random mutations of JSON texts, whatever serde_json
    /// accepts we accept with the same strings and structure.
    #[cfg(feature = "images")]
    #[test]
    fn accepts_what_serde_json_accepts() {
        fn same(a: &Json, b: &serde_json::Value) -> bool {
            use serde_json::Value as V;
            match (a, b) {
                (Json::Null, V::Null) => true,
                (Json::Bool(x), V::Bool(y)) => x == y,
                (Json::Num(n), V::Number(m)) => n.parse::<f64>().ok() == m.as_f64(),
                (Json::Str(x), V::String(y)) => x == y,
                (Json::Arr(x), V::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
                (Json::Obj(x), V::Object(y)) => {
                    y.iter().all(|(k, v)| x.iter().rev().find(|(xk, _)| xk == k).is_some_and(|(_, xv)| same(xv, v)))
                }
                _ => false,
            }
        }
        let seeds = [
            r#"{"connections": 2, "kernels": 1, "last_activity": "2026-11-30T07:40:00.123456Z"}"#,
            r#"[{"id": "d6c6", "name": "py\u00e9\ud83d\ude00", "execution_state": "busy", "connections": 0}]"#,
            r#"{"a": [1, -2.5e3, 0.5E-2, true, false, null, {"b": "\"\\\/\b\f\n\r\t"}], "a": {}}"#,
        ];
        let alphabet: Vec<char> = "{}[]\",:.-+eE0123456789 \t\ntrufalsn\\u/dDaé😀\u{1}".chars().collect();
        let mut r: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            r
        };
        let (mut agreed, mut both) = (0, 0);
        for i in 0..20_000 {
            let mut t: Vec<char> = seeds[i % seeds.len()].chars().collect();
            for _ in 0..(next() % 4) {
                let at = (next() % (t.len() as u64 + 1)) as usize;
                match next() % 3 {
                    0 if at < t.len() => {
                        t.remove(at);
                    }
                    1 if at < t.len() => t[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                    _ => t.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
                }
            }
            let text: String = t.into_iter().collect();
            let ours = parse(&text);
            if let Ok(theirs) = serde_json::from_str::<serde_json::Value>(&text) {
                let v = ours.as_ref().unwrap_or_else(|e| panic!("{text:?}: serde_json accepts, we refuse: {e}"));
                assert!(same(v, &theirs), "{text:?}: {v:?} vs {theirs:?}");
                both += 1;
            } else if ours.is_err() {
                agreed += 1;
            }
        }
        // Both sides of the comparison were exercised.
        assert!(both > 1000 && agreed > 1000, "accepted by both {both}, refused by both {agreed}");
    }

    /// Property: whatever we write with the serializer below parses back to
    /// the same value (strings with every kind of character, nested values).
    #[test]
    fn round_trips_generated_values() {
        fn write(v: &Json, out: &mut String) {
            match v {
                Json::Null => out.push_str("null"),
                Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Json::Num(n) => out.push_str(n),
                Json::Str(s) => {
                    out.push('"');
                    for c in s.chars() {
                        match c {
                            '"' => out.push_str("\\\""),
                            '\\' => out.push_str("\\\\"),
                            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                            c if (c as u32) > 0xFFFF => {
                                let u = c as u32 - 0x10000;
                                out.push_str(&format!("\\u{:04x}\\u{:04x}", 0xD800 + (u >> 10), 0xDC00 + (u & 0x3FF)));
                            }
                            c => out.push(c),
                        }
                    }
                    out.push('"');
                }
                Json::Arr(a) => {
                    out.push_str("[ ");
                    for (i, x) in a.iter().enumerate() {
                        if i > 0 {
                            out.push_str(" ,\n");
                        }
                        write(x, out);
                    }
                    out.push(']');
                }
                Json::Obj(m) => {
                    out.push('{');
                    for (i, (k, x)) in m.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write(&Json::Str(k.clone()), out);
                        out.push_str(" :\t");
                        write(x, out);
                    }
                    out.push('}');
                }
            }
        }
        // A small deterministic generator (xorshift), no extra crate.
        struct Rng(u64);
        impl Rng {
            fn next(&mut self) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0
            }
        }
        fn gen(r: &mut Rng, depth: usize) -> Json {
            let pick = if depth > 4 { r.next() % 4 } else { r.next() % 6 };
            match pick {
                0 => Json::Null,
                1 => Json::Bool(r.next() % 2 == 0),
                2 => {
                    let forms = ["0", "-0", "12", "-3.25", "1e9", "6.02E+23", "-1.5e-7"];
                    Json::Num(forms[(r.next() % forms.len() as u64) as usize].into())
                }
                3 => {
                    let pool = ['a', '"', '\\', '\n', '\u{1}', 'é', '€', '😀', '/', ' ', '\u{7f}'];
                    Json::Str((0..r.next() % 8).map(|_| pool[(r.next() % pool.len() as u64) as usize]).collect())
                }
                4 => Json::Arr((0..r.next() % 4).map(|_| gen(r, depth + 1)).collect()),
                _ => Json::Obj((0..r.next() % 4).map(|i| (format!("k{i}\u{e9}"), gen(r, depth + 1))).collect()),
            }
        }
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3000 {
            let v = gen(&mut r, 0);
            let mut text = String::new();
            write(&v, &mut text);
            assert_eq!(parse(&text).as_ref(), Ok(&v), "{text}");
            // Every strict prefix of a compound value is refused, never a panic.
            for cut in 0..text.len() {
                if text.is_char_boundary(cut) && matches!(v, Json::Arr(_) | Json::Obj(_) | Json::Str(_)) {
                    assert!(parse(&text[..cut]).is_err(), "prefix {:?} of {text:?}", &text[..cut]);
                }
            }
        }
    }
}
