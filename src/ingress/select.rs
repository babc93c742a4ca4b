//! Parsing only what accepting an event reads.
//!
//! The ack path reads a handful of values from a payload (the adapter's fields, the source's
//! pointers, the handlers' `[[when]]` and debounce pointers) and stores the body as it came. Building
//! a whole `serde_json::Value` for that allocates every string, array and object of the body:
//! about 33 instructions per byte, the largest cost of accepting a 4.5 KB ticket. `Reads` is the
//! set of places read; `Reads::parse` builds a `Value` holding the values at those places, with
//! the same shape on the way to each (the same objects, arrays of the same length), and checks
//! the rest of the body exactly as a full parse would (grammar, escapes, UTF-8 in strings, the
//! nesting limit) without keeping it. So a body is accepted or refused exactly as before, and every
//! reader finds what it would have found in the full `Value`.
//!
//! The one rule for readers: whatever reads the payload on the ack path declares what it reads
//! (`Adapter::reads`, the source's pointers, `EventRouter::reads`). A place not declared reads as
//! missing. The tests hold each adapter to the full parse over every fixture, and the `accept`
//! fuzz target over arbitrary bodies.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// The places of a payload that are read: JSON pointers (RFC 6901), each taking the whole value
/// it leads to. `Reads::everything()` parses the whole body, as `serde_json::from_slice` would.
#[derive(Debug, Clone, PartialEq)]
pub struct Reads {
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// The whole value here.
    All,
    /// Only these members or elements (by the pointer's token), and for `*` every one of them.
    /// Every node in `tokens` holds what `any` holds as well (`spread`), so a member named both
    /// ways keeps what both paths read.
    Some {
        tokens: BTreeMap<String, Node>,
        any: Option<Box<Node>>,
    },
}

impl Node {
    fn empty() -> Node {
        Node::Some {
            tokens: BTreeMap::new(),
            any: None,
        }
    }

    /// Adds the path below this node; `wildcard` makes a `*` token stand for every member.
    fn add(&mut self, path: &[String], wildcard: bool) {
        let Node::Some { tokens, any } = self else {
            return; // Everything below is kept already.
        };
        let Some((first, rest)) = path.split_first() else {
            *self = Node::All;
            return;
        };
        let child = if wildcard && first == "*" {
            any.get_or_insert_with(|| Box::new(Node::empty()))
        } else {
            tokens.entry(first.clone()).or_insert_with(Node::empty)
        };
        child.add(rest, wildcard);
    }

    /// Makes every named child hold what `*` holds, at every depth.
    fn spread(&mut self) {
        if let Node::Some { tokens, any } = self {
            if let Some(any) = any {
                any.spread();
                for child in tokens.values_mut() {
                    child.merge(any);
                }
            }
            for child in tokens.values_mut() {
                child.spread();
            }
        }
    }

    /// What to keep of the member or element named `token`, if anything.
    fn child(&self, token: &str) -> Option<&Node> {
        match self {
            Node::All => Some(self),
            Node::Some { tokens, any } => tokens.get(token).or(any.as_deref()),
        }
    }

    fn merge(&mut self, other: &Node) {
        match (&mut *self, other) {
            (Node::All, _) => {}
            (_, Node::All) => *self = Node::All,
            (
                Node::Some { tokens, any },
                Node::Some {
                    tokens: theirs,
                    any: their_any,
                },
            ) => {
                for (token, node) in theirs {
                    tokens
                        .entry(token.clone())
                        .or_insert_with(Node::empty)
                        .merge(node);
                }
                if let Some(their_any) = their_any {
                    any.get_or_insert_with(|| Box::new(Node::empty()))
                        .merge(their_any);
                }
            }
        }
    }
}

/// The tokens of a JSON pointer, unescaped (`~1` is `/`, `~0` is `~`); `None` if it is not one.
fn tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

impl Reads {
    /// Nothing but the shape of the root.
    pub fn nothing() -> Reads {
        Reads {
            root: Node::empty(),
        }
    }

    /// What these patterns read (see `pattern`).
    pub fn patterns(patterns: &[&str]) -> Reads {
        let mut reads = Reads::nothing();
        for p in patterns {
            reads.pattern(p);
        }
        reads
    }

    /// The whole payload.
    pub fn everything() -> Reads {
        Reads { root: Node::All }
    }

    /// The whole value at a JSON pointer. Text that is not a pointer reads nothing (it would
    /// find nothing either).
    pub fn pointer(&mut self, pointer: &str) -> &mut Self {
        if let Some(path) = tokens(pointer) {
            self.root.add(&path, false);
            self.root.spread();
        }
        self
    }

    /// As `pointer`, with `*` standing for every member of an object or element of an array:
    /// `/updates/*/by`. For readers in the code, whose pointers are not a user's.
    pub fn pattern(&mut self, pattern: &str) -> &mut Self {
        if let Some(path) = tokens(pattern) {
            self.root.add(&path, true);
            self.root.spread();
        }
        self
    }

    /// Everything `other` reads as well.
    pub fn merge(&mut self, other: &Reads) -> &mut Self {
        self.root.merge(&other.root);
        self.root.spread();
        self
    }

    pub fn is_everything(&self) -> bool {
        self.root == Node::All
    }

    /// Parses `json` as JSON, keeping the values this set reads (see the module docs). Fails
    /// exactly where `serde_json::from_str::<Value>` fails. Text, not bytes: the body's UTF-8 is
    /// checked once, in one pass, rather than string by string.
    pub fn parse(&self, json: &str) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(json);
        let value = Keep(&self.root).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

/// Deserializes one value, keeping what its node says.
struct Keep<'n>(&'n Node);

impl<'de> DeserializeSeed<'de> for Keep<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        match self.0 {
            Node::All => serde::Deserialize::deserialize(de),
            node => de.deserialize_any(KeepVisitor(node)),
        }
    }
}

struct KeepVisitor<'n>(&'n Node);

impl<'de> Visitor<'de> for KeepVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    // Scalars are kept whole, as `Value` would read them.
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Elements not read stay as `null`, so the ones read keep their index and the array
        // its length.
        let mut kept = Vec::new();
        let mut index = String::new();
        loop {
            index.clear();
            fmt::Write::write_fmt(&mut index, format_args!("{}", kept.len()))
                .expect("writing to a String");
            let element = match self.0.child(&index) {
                Some(node) => seq.next_element_seed(Keep(node))?,
                None => seq.next_element::<Skip>()?.map(|Skip| Value::Null),
            };
            match element {
                Some(value) => kept.push(value),
                None => return Ok(Value::Array(kept)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed(self.0))? {
            match key {
                Some((key, node)) => {
                    let value = map.next_value_seed(Keep(node))?;
                    kept.insert(key, value);
                }
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }
}

/// A member's name, and what to keep of its value if it is read at all. Names not read are
/// compared where they lie in the body, never copied.
struct KeySeed<'n>(&'n Node);

impl<'de, 'n> DeserializeSeed<'de> for KeySeed<'n> {
    type Value = Option<(String, &'n Node)>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de, 'n> Visitor<'de> for KeySeed<'n> {
    type Value = Option<(String, &'n Node)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.child(key).map(|node| (key.to_owned(), node)))
    }
}

/// A value that is checked as a full parse would check it, and dropped.
struct Skip;

impl<'de> serde::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Skip, D::Error> {
        // `deserialize_any`, not `deserialize_ignored_any`: serde_json's skipping does not
        // apply the nesting limit nor check `\u` escapes, and the body must be refused or
        // accepted exactly as a full parse would.
        de.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_none<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

#[cfg(test)]
mod tests;
