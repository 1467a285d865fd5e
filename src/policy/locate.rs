//! Where a key is in the policy text.
//!
//! `serde_yaml` reports positions for syntax and type errors but not for the
//! semantic checks done after deserialization, so this module re-reads the
//! text with a small, tolerant YAML *structure* scanner (block mappings and
//! sequences by indentation, flow `[...]`/`{...}` collections, comments,
//! quoted keys, block scalars) and answers "at which line and column is
//! `client.accept[0].password`?". It never fails: a path it cannot find
//! resolves to the nearest ancestor it did find, and otherwise to 1:1.
//!
//! Positions are 1-based; columns count characters, as libyaml does.

/// One step of a key path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Splits a dotted key path such as `client.accept[0].password` into segments.
/// A malformed index is kept as part of the key (and so simply not found).
pub(crate) fn parse_path(dotted: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in dotted.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            segs.push(Seg::Key(name.to_string()));
        }
        while let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else { break };
            match after[..end].parse::<usize>() {
                Ok(n) => segs.push(Seg::Index(n)),
                Err(_) => segs.push(Seg::Key(after[..end].to_string())),
            }
            rest = &after[end + 1..];
        }
    }
    segs
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    const START: Pos = Pos { line: 1, col: 1 };

    fn at(line0: usize, col0: usize) -> Pos {
        Pos {
            line: line0 + 1,
            col: col0 + 1,
        }
    }
}

#[derive(Debug)]
struct Node {
    pos: Pos,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Scalar,
    Map(Vec<Entry>),
    Seq(Vec<Node>),
}

#[derive(Debug)]
struct Entry {
    key: String,
    pos: Pos,
    value: Node,
}

/// The structure of one YAML document, with positions.
#[derive(Debug)]
pub(crate) struct Locator {
    root: Option<Node>,
}

impl Locator {
    pub(crate) fn new(text: &str) -> Locator {
        let lines: Vec<Vec<char>> = text.lines().map(strip_comment).collect();
        let vl = virtual_lines(&lines);
        let mut p = Parser {
            lines: &lines,
            vl,
            i: 0,
        };
        let root = if p.vl.is_empty() {
            None
        } else {
            Some(p.node(0))
        };
        Locator { root }
    }

    /// Position of the key (or sequence item) at `path`; the nearest found
    /// ancestor if it is not there; 1:1 if nothing is.
    pub(crate) fn locate(&self, path: &[Seg]) -> Pos {
        self.walk_path(path).0
    }

    /// The deepest position found along `path`, and the node at `path` if the
    /// whole path was found.
    fn walk_path(&self, path: &[Seg]) -> (Pos, Option<&Node>) {
        let Some(mut node) = self.root.as_ref() else {
            return (Pos::START, None);
        };
        let mut best = Pos::START;
        for seg in path {
            let next = match (seg, &node.kind) {
                (Seg::Key(k), Kind::Map(entries)) => entries
                    .iter()
                    .find(|e| e.key == *k)
                    .map(|e| (e.pos, &e.value)),
                (Seg::Index(i), Kind::Seq(items)) => items.get(*i).map(|n| (n.pos, n)),
                _ => None,
            };
            match next {
                Some((pos, n)) => {
                    best = pos;
                    node = n;
                }
                None => return (best, None),
            }
        }
        (best, Some(node))
    }

    /// Position of the second occurrence of the last key of `dotted` (a
    /// duplicate key); [`Locator::locate_key`] if there is no second one.
    pub(crate) fn locate_duplicate(&self, dotted: &str) -> Pos {
        let path = parse_path(dotted);
        if let Some((Seg::Key(last), parent)) = path.split_last() {
            if let (
                _,
                Some(Node {
                    kind: Kind::Map(entries),
                    ..
                }),
            ) = self.walk_path(parent)
            {
                if let Some(e) = entries.iter().filter(|e| e.key == *last).nth(1) {
                    return e.pos;
                }
            }
        }
        self.locate(&path)
    }

    /// [`Locator::locate`] for a dotted path (`upstream.tls`, `senders[1]`).
    pub(crate) fn locate_key(&self, dotted: &str) -> Pos {
        self.locate(&parse_path(dotted))
    }

    /// The dotted path of the deepest key or item that starts at or before
    /// `pos` (the key an error at `pos` most likely belongs to).
    pub(crate) fn key_at(&self, pos: Pos) -> Option<String> {
        let mut best: Option<(Pos, String)> = None;
        if let Some(root) = &self.root {
            walk(root, String::new(), &mut |p, path| {
                if p <= pos && best.as_ref().is_none_or(|(b, _)| p >= *b) {
                    best = Some((p, path.to_string()));
                }
            });
        }
        best.map(|(_, path)| path)
    }
}

fn walk(node: &Node, path: String, f: &mut dyn FnMut(Pos, &str)) {
    match &node.kind {
        Kind::Scalar => {}
        Kind::Map(entries) => {
            for e in entries {
                let p = if path.is_empty() {
                    e.key.clone()
                } else {
                    format!("{path}.{}", e.key)
                };
                f(e.pos, &p);
                walk(&e.value, p, f);
            }
        }
        Kind::Seq(items) => {
            for (i, n) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                f(n.pos, &p);
                walk(n, p, f);
            }
        }
    }
}

/// Position of `dotted` in `text` (see [`Locator::locate`]).
#[cfg(test)]
pub(crate) fn locate(text: &str, dotted: &str) -> (usize, usize) {
    let p = Locator::new(text).locate_key(dotted);
    (p.line, p.col)
}

/// Removes a `#` comment (outside quotes, at the start or after whitespace)
/// and trailing whitespace.
fn strip_comment(line: &str) -> Vec<char> {
    let chars: Vec<char> = line.chars().collect();
    let mut quote: Option<char> = None;
    let mut prev_sig: Option<char> = None; // previous non-space char outside quotes
    let mut end = chars.len();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some('"') => {
                if c == '\\' {
                    i += 1;
                } else if c == '"' {
                    quote = None;
                }
            }
            Some(_) => {
                if c == '\'' {
                    quote = None;
                }
            }
            None => {
                let after_space = i == 0 || chars[i - 1].is_whitespace();
                if c == '#' && after_space {
                    end = i;
                    break;
                }
                let starts_scalar =
                    matches!(prev_sig, None | Some(':' | '-' | '[' | '{' | ',' | '?'));
                if (c == '"' || c == '\'') && starts_scalar && after_space_or_indicator(&chars, i) {
                    quote = Some(c);
                }
                if !c.is_whitespace() {
                    prev_sig = Some(c);
                }
            }
        }
        i += 1;
    }
    let mut out = chars[..end].to_vec();
    while out.last().is_some_and(|c| c.is_whitespace()) {
        out.pop();
    }
    out
}

/// A quote opens a quoted scalar only at the start of a token.
fn after_space_or_indicator(chars: &[char], i: usize) -> bool {
    i == 0 || chars[i - 1].is_whitespace() || matches!(chars[i - 1], '[' | '{' | ',')
}

/// A line of block structure: either a `- ` sequence marker or the content
/// that starts at `col`. `- key: v` yields a marker and a content line.
#[derive(Debug, Clone, Copy)]
struct VLine {
    line: usize,
    col: usize,
    dash: bool,
}

fn virtual_lines(lines: &[Vec<char>]) -> Vec<VLine> {
    let mut out = Vec::new();
    for (n, chars) in lines.iter().enumerate() {
        let Some(mut c) = chars.iter().position(|ch| !ch.is_whitespace()) else {
            continue;
        };
        if c == 0 {
            let s: String = chars.iter().collect();
            if s.starts_with("---") || s.starts_with("...") || s.starts_with('%') {
                continue;
            }
        }
        while chars[c] == '-' && chars.get(c + 1).is_none_or(|ch| ch.is_whitespace()) {
            out.push(VLine {
                line: n,
                col: c,
                dash: true,
            });
            match chars[c + 1..].iter().position(|ch| !ch.is_whitespace()) {
                Some(off) => c = c + 1 + off,
                None => {
                    c = chars.len();
                    break;
                }
            }
        }
        if c < chars.len() {
            out.push(VLine {
                line: n,
                col: c,
                dash: false,
            });
        }
    }
    out
}

/// If `text` starts with a mapping key (`key:`, `"key":`, `'key':`), returns
/// the key and the offset where its inline value starts (`text.len()` if none).
fn split_key(text: &[char]) -> Option<(String, usize)> {
    let first = *text.first()?;
    let (key, colon) = match first {
        '"' | '\'' => {
            let (key, end) = read_quoted_line(text, 0);
            let colon = end + text[end..].iter().take_while(|c| **c == ' ').count();
            (key, colon)
        }
        '[' | '{' | '?' | '&' | '*' | '!' | '|' | '>' => return None,
        _ => {
            let colon = (0..text.len())
                .find(|&k| text[k] == ':' && text.get(k + 1).is_none_or(|c| c.is_whitespace()))?;
            let key: String = text[..colon].iter().collect();
            (key.trim_end().to_string(), colon)
        }
    };
    if text.get(colon) != Some(&':') || text.get(colon + 1).is_some_and(|c| !c.is_whitespace()) {
        return None;
    }
    let value = colon
        + 1
        + text[colon + 1..]
            .iter()
            .take_while(|c| c.is_whitespace())
            .count();
    Some((key, value))
}

/// Reads a quoted scalar starting at `text[start]` within one line; returns
/// its (approximately unescaped) value and the index just past it.
fn read_quoted_line(text: &[char], start: usize) -> (String, usize) {
    let q = text[start];
    let mut s = String::new();
    let mut i = start + 1;
    while i < text.len() {
        let c = text[i];
        if q == '"' && c == '\\' {
            if let Some(n) = text.get(i + 1) {
                s.push(*n);
            }
            i += 2;
            continue;
        }
        if c == q {
            if q == '\'' && text.get(i + 1) == Some(&'\'') {
                s.push('\'');
                i += 2;
                continue;
            }
            return (s, i + 1);
        }
        s.push(c);
        i += 1;
    }
    (s, text.len())
}

/// Nesting bound (hostile input must not overflow the stack); deeper content
/// is treated as an opaque scalar.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    lines: &'a [Vec<char>],
    vl: Vec<VLine>,
    i: usize,
}

impl Parser<'_> {
    fn cur(&self) -> Option<VLine> {
        self.vl.get(self.i).copied()
    }

    /// Skips virtual lines more indented than `indent` (leftovers of a value
    /// this scanner does not model, such as multi-line plain scalars).
    fn skip_deeper(&mut self, indent: usize) {
        while self.cur().is_some_and(|v| v.col > indent) {
            self.i += 1;
        }
    }

    fn skip_through_line(&mut self, line: usize) {
        while self.cur().is_some_and(|v| v.line <= line) {
            self.i += 1;
        }
    }

    /// The node that starts at the current virtual line.
    fn node(&mut self, depth: usize) -> Node {
        let Some(v) = self.cur() else {
            return Node {
                pos: Pos::START,
                kind: Kind::Scalar,
            };
        };
        if depth >= MAX_DEPTH {
            self.i += 1;
            return Node {
                pos: Pos::at(v.line, v.col),
                kind: Kind::Scalar,
            };
        }
        if v.dash {
            return self.seq(v.col, depth);
        }
        let text = &self.lines[v.line][v.col..];
        if matches!(text.first(), Some('[' | '{')) {
            let (node, end) = self.flow_at(v.line, v.col, depth);
            self.skip_through_line(end);
            return node;
        }
        if split_key(text).is_some() {
            return self.map(v.col, depth);
        }
        self.i += 1;
        Node {
            pos: Pos::at(v.line, v.col),
            kind: Kind::Scalar,
        }
    }

    fn map(&mut self, indent: usize, depth: usize) -> Node {
        let mut entries = Vec::new();
        let start = self.cur().map_or(Pos::START, |v| Pos::at(v.line, v.col));
        while let Some(v) = self.cur() {
            if v.col < indent || v.dash {
                break;
            }
            if v.col > indent {
                self.i += 1;
                continue;
            }
            let text = &self.lines[v.line][v.col..];
            let Some((key, val_off)) = split_key(text) else {
                self.i += 1;
                continue;
            };
            self.i += 1;
            let key_pos = Pos::at(v.line, v.col);
            let value = self.value(v, indent, val_off, key_pos, depth);
            self.skip_deeper(indent);
            entries.push(Entry {
                key,
                pos: key_pos,
                value,
            });
        }
        Node {
            pos: start,
            kind: Kind::Map(entries),
        }
    }

    /// The value of the key on `v` whose inline value starts at `val_off`.
    fn value(
        &mut self,
        v: VLine,
        indent: usize,
        val_off: usize,
        key_pos: Pos,
        depth: usize,
    ) -> Node {
        let line = &self.lines[v.line];
        let mut col = v.col + val_off;
        // anchors and tags before the value: `&a`, `!!str`
        while matches!(line.get(col), Some('&' | '!')) {
            let tok = line[col..]
                .iter()
                .take_while(|c| !c.is_whitespace())
                .count();
            let sp = line[col + tok..]
                .iter()
                .take_while(|c| c.is_whitespace())
                .count();
            col += tok + sp;
        }
        match line.get(col) {
            Some('[' | '{') => {
                let (node, end) = self.flow_at(v.line, col, depth);
                self.skip_through_line(end);
                node
            }
            Some('|' | '>') => {
                self.skip_deeper(indent);
                Node {
                    pos: Pos::at(v.line, col),
                    kind: Kind::Scalar,
                }
            }
            Some(_) => Node {
                pos: Pos::at(v.line, col),
                kind: Kind::Scalar,
            },
            None => match self.cur() {
                Some(n) if n.col > indent => self.node(depth + 1),
                Some(n) if n.col == indent && n.dash => self.seq(indent, depth + 1),
                _ => Node {
                    pos: key_pos,
                    kind: Kind::Scalar,
                },
            },
        }
    }

    fn seq(&mut self, indent: usize, depth: usize) -> Node {
        let mut items = Vec::new();
        let start = self.cur().map_or(Pos::START, |v| Pos::at(v.line, v.col));
        while let Some(v) = self.cur() {
            if v.col != indent || !v.dash {
                break;
            }
            self.i += 1;
            let item = match self.cur() {
                Some(n) if n.col > indent => self.node(depth + 1),
                _ => Node {
                    pos: Pos::at(v.line, v.col),
                    kind: Kind::Scalar,
                },
            };
            self.skip_deeper(indent);
            items.push(item);
        }
        Node {
            pos: start,
            kind: Kind::Seq(items),
        }
    }

    /// Parses the flow collection at (`line`, `col`) (0-based); returns it and
    /// the 0-based line on which it ended.
    fn flow_at(&self, line: usize, col: usize, depth: usize) -> (Node, usize) {
        let mut f = Flow {
            lines: self.lines,
            l: line,
            c: col,
        };
        let node = f.node(depth);
        (node, f.l)
    }
}

/// Cursor over the comment-stripped text for flow collections, which may span lines.
struct Flow<'a> {
    lines: &'a [Vec<char>],
    l: usize,
    c: usize,
}

impl Flow<'_> {
    fn peek(&self) -> Option<char> {
        self.lines
            .get(self.l)
            .and_then(|line| line.get(self.c))
            .copied()
    }

    fn pos(&self) -> Pos {
        Pos::at(self.l, self.c)
    }

    fn skip_ws(&mut self) {
        while let Some(line) = self.lines.get(self.l) {
            match line.get(self.c) {
                None => {
                    if self.l + 1 >= self.lines.len() {
                        return;
                    }
                    self.l += 1;
                    self.c = 0;
                }
                Some(c) if c.is_whitespace() => self.c += 1,
                Some(_) => return,
            }
        }
    }

    fn node(&mut self, depth: usize) -> Node {
        self.skip_ws();
        let pos = self.pos();
        let scalar = Node {
            pos,
            kind: Kind::Scalar,
        };
        match self.peek() {
            Some('[') if depth < MAX_DEPTH => {
                self.c += 1;
                Node {
                    pos,
                    kind: Kind::Seq(self.seq_items(depth)),
                }
            }
            Some('{') if depth < MAX_DEPTH => {
                self.c += 1;
                Node {
                    pos,
                    kind: Kind::Map(self.map_entries(depth)),
                }
            }
            Some('"' | '\'') => {
                self.quoted();
                scalar
            }
            Some(_) => {
                self.plain();
                scalar
            }
            None => scalar,
        }
    }

    fn seq_items(&mut self, depth: usize) -> Vec<Node> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(']') => {
                    self.c += 1;
                    break;
                }
                Some(',') => {
                    self.c += 1;
                    continue;
                }
                Some(_) => {}
            }
            items.push(self.node(depth + 1));
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(',') => self.c += 1,
                Some(']') => {
                    self.c += 1;
                    break;
                }
                Some(_) => self.c += 1,
            }
        }
        items
    }

    fn map_entries(&mut self, depth: usize) -> Vec<Entry> {
        let mut entries = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => break,
                Some('}') => {
                    self.c += 1;
                    break;
                }
                Some(',') => {
                    self.c += 1;
                    continue;
                }
                Some(_) => {}
            }
            let key_pos = self.pos();
            let key = match self.peek() {
                Some('"' | '\'') => self.quoted(),
                _ => self.flow_key(),
            };
            self.skip_ws();
            let value = if self.peek() == Some(':') {
                self.c += 1;
                self.skip_ws();
                match self.peek() {
                    Some(',' | '}') | None => Node {
                        pos: key_pos,
                        kind: Kind::Scalar,
                    },
                    Some(_) => self.node(depth + 1),
                }
            } else {
                Node {
                    pos: key_pos,
                    kind: Kind::Scalar,
                }
            };
            entries.push(Entry {
                key,
                pos: key_pos,
                value,
            });
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(',') => self.c += 1,
                Some('}') => {
                    self.c += 1;
                    break;
                }
                Some(_) => self.c += 1,
            }
        }
        entries
    }

    /// A quoted scalar (may span lines); returns its approximate value.
    fn quoted(&mut self) -> String {
        let Some(q) = self.peek() else {
            return String::new();
        };
        self.c += 1;
        let mut s = String::new();
        while let Some(line) = self.lines.get(self.l) {
            let Some(&c) = line.get(self.c) else {
                if self.l + 1 >= self.lines.len() {
                    break;
                }
                self.l += 1;
                self.c = 0;
                s.push(' ');
                continue;
            };
            if q == '"' && c == '\\' {
                if let Some(n) = line.get(self.c + 1) {
                    s.push(*n);
                }
                self.c += 2;
                continue;
            }
            self.c += 1;
            if c == q {
                if q == '\'' && line.get(self.c) == Some(&'\'') {
                    s.push('\'');
                    self.c += 1;
                    continue;
                }
                break;
            }
            s.push(c);
        }
        s
    }

    /// A plain scalar in flow context: up to `,`, `]`, `}` or the end of the line.
    fn plain(&mut self) {
        while let Some(c) = self.peek() {
            if matches!(c, ',' | ']' | '}') {
                break;
            }
            self.c += 1;
        }
    }

    /// A plain key in a flow mapping: up to `:` (followed by space or an
    /// indicator), `,`, `}` or the end of the line.
    fn flow_key(&mut self) -> String {
        let mut s = String::new();
        let Some(line) = self.lines.get(self.l) else {
            return s;
        };
        while let Some(&c) = line.get(self.c) {
            if matches!(c, ',' | '}' | ']') {
                break;
            }
            if c == ':'
                && line
                    .get(self.c + 1)
                    .is_none_or(|n| n.is_whitespace() || matches!(n, ',' | '}' | ']'))
            {
                break;
            }
            s.push(c);
            self.c += 1;
        }
        s.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "\
version: 1
tenant: acme
upstream:
  address: smtp.example:587
  tls: starttls
  reuse:
    max_idle: 4
credential:
  secret_dir: /s
  pins:
    - sha256:aa
    -   sha256:bb
client:
  accept:
  - username: a
    password: mounted
  -
    username: b
    password: any
last: x
";

    #[test]
    fn block_mappings_and_sequences() {
        assert_eq!(locate(BLOCK, "version"), (1, 1));
        assert_eq!(locate(BLOCK, "tenant"), (2, 1));
        assert_eq!(locate(BLOCK, "upstream"), (3, 1));
        assert_eq!(locate(BLOCK, "upstream.tls"), (5, 3));
        assert_eq!(locate(BLOCK, "upstream.reuse.max_idle"), (7, 5));
        assert_eq!(locate(BLOCK, "credential.pins"), (10, 3));
        assert_eq!(locate(BLOCK, "credential.pins[0]"), (11, 7));
        assert_eq!(locate(BLOCK, "credential.pins[1]"), (12, 9));
        // sequence at the same indentation as its key
        assert_eq!(locate(BLOCK, "client.accept[0]"), (15, 5));
        assert_eq!(locate(BLOCK, "client.accept[0].password"), (16, 5));
        assert_eq!(locate(BLOCK, "client.accept[1].password"), (19, 5));
        assert_eq!(locate(BLOCK, "last"), (20, 1));
    }

    #[test]
    fn falls_back_to_nearest_ancestor_then_start() {
        assert_eq!(locate(BLOCK, "upstream.ca_file"), (3, 1));
        assert_eq!(locate(BLOCK, "upstream.reuse.idle_timeout"), (6, 3));
        assert_eq!(locate(BLOCK, "credential.pins[7]"), (10, 3));
        assert_eq!(locate(BLOCK, "client.accept[0].password.x"), (16, 5));
        assert_eq!(locate(BLOCK, "nothing.here"), (1, 1));
        assert_eq!(locate("", "tenant"), (1, 1));
        assert_eq!(locate("# only a comment\n", "tenant"), (1, 1));
    }

    #[test]
    fn flow_collections() {
        let text = "\
senders: [ \"*@a.example\", '<>',b@c.example ]
credential: { secret_dir: /s, pins: [x,
     \"y\"] }
recipients:
  domains: []
  max_per_message: 5
";
        assert_eq!(locate(text, "senders"), (1, 1));
        assert_eq!(locate(text, "senders[0]"), (1, 12));
        assert_eq!(locate(text, "senders[1]"), (1, 27));
        assert_eq!(locate(text, "senders[2]"), (1, 32));
        assert_eq!(locate(text, "credential.secret_dir"), (2, 15));
        assert_eq!(locate(text, "credential.pins"), (2, 31));
        assert_eq!(locate(text, "credential.pins[0]"), (2, 38));
        assert_eq!(locate(text, "credential.pins[1]"), (3, 6));
        assert_eq!(locate(text, "recipients.domains"), (5, 3));
        assert_eq!(locate(text, "recipients.domains[0]"), (5, 3));
        assert_eq!(locate(text, "recipients.max_per_message"), (6, 3));
    }

    #[test]
    fn comments_and_quoted_keys() {
        let text = "\
# leading comment
---
\"version\": 1   # trailing: comment
'tenant': 'it''s # not a comment'
upstream:   # a section
  # indented comment
  'tls': none # none: is fine
  note: \"a # b\" # c
  url: http://x#y
  after: 1
data: {bare_lf: reject} # end
";
        assert_eq!(locate(text, "version"), (3, 1));
        assert_eq!(locate(text, "tenant"), (4, 1));
        assert_eq!(locate(text, "upstream.tls"), (7, 3));
        assert_eq!(locate(text, "upstream.note"), (8, 3));
        assert_eq!(locate(text, "upstream.url"), (9, 3));
        assert_eq!(locate(text, "upstream.after"), (10, 3));
        assert_eq!(locate(text, "data.bare_lf"), (11, 8));
    }

    #[test]
    fn block_scalars_are_skipped() {
        let text = "\
a: |
  x: 1
  - y
b: >-
    z: 2
c: 3
";
        assert_eq!(locate(text, "b"), (4, 1));
        assert_eq!(locate(text, "c"), (6, 1));
        assert_eq!(locate(text, "a.x"), (1, 1));
    }

    #[test]
    fn unicode_columns_are_characters() {
        let text = "a:\n  é: 1\n  b: [\"ü\", x]\n";
        assert_eq!(locate(text, "a.b"), (3, 3));
        assert_eq!(locate(text, "a.b[1]"), (3, 12));
    }

    #[test]
    fn duplicate_keys() {
        let l = Locator::new("a:\n  b: 1\n  c: 2\n  b: 3\n");
        assert_eq!(l.locate_duplicate("a.b"), Pos { line: 4, col: 3 });
        assert_eq!(l.locate_duplicate("a.c"), Pos { line: 3, col: 3 });
        assert_eq!(l.locate_duplicate("a.x"), Pos { line: 1, col: 1 });
    }

    #[test]
    fn path_parsing() {
        assert_eq!(
            parse_path("client.accept[0].password"),
            vec![
                Seg::Key("client".into()),
                Seg::Key("accept".into()),
                Seg::Index(0),
                Seg::Key("password".into())
            ]
        );
        assert_eq!(
            parse_path("senders[12]"),
            vec![Seg::Key("senders".into()), Seg::Index(12)]
        );
        assert_eq!(
            parse_path("a[1][2]"),
            vec![Seg::Key("a".into()), Seg::Index(1), Seg::Index(2)]
        );
        assert_eq!(parse_path("."), vec![]);
    }

    #[test]
    fn key_at_finds_enclosing_key() {
        let l = Locator::new(BLOCK);
        assert_eq!(
            l.key_at(Pos { line: 5, col: 8 }).as_deref(),
            Some("upstream.tls")
        );
        assert_eq!(
            l.key_at(Pos { line: 15, col: 5 }).as_deref(),
            Some("client.accept[0].username")
        );
        assert_eq!(
            l.key_at(Pos { line: 12, col: 20 }).as_deref(),
            Some("credential.pins[1]")
        );
        assert_eq!(Locator::new("").key_at(Pos { line: 3, col: 1 }), None);
    }

    #[test]
    fn pathological_input_does_not_hang_or_panic() {
        let deep = "[".repeat(10_000);
        assert_eq!(locate(&deep, "a"), (1, 1));
        let dashes = "- ".repeat(10_000);
        assert_eq!(locate(&dashes, "a"), (1, 1));
        let nested: String = (0..5_000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert_eq!(locate(&nested, "k0.k1"), (2, 2));
        for text in [
            "- - -",
            ":",
            "a: [}{]",
            "{a: {b: [c, {d: e}]}}",
            "\"unterminated",
            "a:\n\tb: 1",
            "- a: b\n  - c",
        ] {
            let _ = locate(text, "a.b[0].d");
        }
        assert_eq!(locate("{a: {b: [c, {d: e}]}}", "a.b[1].d"), (1, 14));
    }
}
