//! The parts of the `pgoutput` logical replication protocol (version 1) the feed needs: relation
//! descriptions, inserts with their values in text form, commits.

use std::collections::HashMap;

/// What one message of the stream means to the feed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    /// A row inserted into `table` (schema, name), with its columns' text values.
    Insert {
        table: (&'a str, &'a str),
        values: Vec<(String, Option<String>)>,
    },
    /// The end of a transaction.
    Commit,
    /// Anything else (begin, relation, type, origin, updates, deletes…).
    Other,
}

struct Relation {
    schema: String,
    name: String,
    columns: Vec<String>,
}

/// Decodes a stream's messages in order, remembering the relations it described.
#[derive(Default)]
pub(crate) struct Decoder {
    relations: HashMap<u32, Relation>,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "truncated: wanted {n} bytes, {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn cstring(&mut self) -> Result<String, String> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or("unterminated string")?;
        let text = String::from_utf8(self.take(end)?.to_vec()).map_err(|e| e.to_string())?;
        self.take(1)?;
        Ok(text)
    }
}

impl Decoder {
    pub(crate) fn decode(&mut self, data: &[u8]) -> Result<Change<'_>, String> {
        let mut r = Reader(data);
        match r.u8()? {
            b'R' => {
                let id = r.u32()?;
                let schema = r.cstring()?;
                let name = r.cstring()?;
                let _replica_identity = r.u8()?;
                let count = r.i16()?;
                let mut columns = Vec::new();
                for _ in 0..count {
                    let _flags = r.u8()?;
                    columns.push(r.cstring()?);
                    let _type = r.u32()?;
                    let _modifier = r.i32()?;
                }
                self.relations.insert(
                    id,
                    Relation {
                        schema,
                        name,
                        columns,
                    },
                );
                Ok(Change::Other)
            }
            b'I' => {
                let id = r.u32()?;
                if r.u8()? != b'N' {
                    return Err("insert without a new tuple".into());
                }
                let relation = self
                    .relations
                    .get(&id)
                    .ok_or_else(|| format!("insert into undescribed relation {id}"))?;
                let count = usize::try_from(r.i16()?).map_err(|e| e.to_string())?;
                let mut values = Vec::with_capacity(count);
                for column in relation.columns.iter().take(count) {
                    let value = match r.u8()? {
                        b'n' | b'u' => None,
                        b't' => {
                            let len = usize::try_from(r.i32()?).map_err(|e| e.to_string())?;
                            Some(
                                String::from_utf8(r.take(len)?.to_vec())
                                    .map_err(|e| e.to_string())?,
                            )
                        }
                        other => return Err(format!("unknown column kind {other}")),
                    };
                    values.push((column.clone(), value));
                }
                Ok(Change::Insert {
                    table: (relation.schema.as_str(), relation.name.as_str()),
                    values,
                })
            }
            b'C' => Ok(Change::Commit),
            _ => Ok(Change::Other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation() -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend(16_385_u32.to_be_bytes());
        m.extend(b"orders\0outbox\0");
        m.push(b'd');
        m.extend(2_i16.to_be_bytes());
        for name in ["id", "topic"] {
            m.push(0);
            m.extend(name.as_bytes());
            m.push(0);
            m.extend(25_u32.to_be_bytes());
            m.extend((-1_i32).to_be_bytes());
        }
        m
    }

    fn insert(relation: u32, topic: Option<&str>) -> Vec<u8> {
        let mut m = vec![b'I'];
        m.extend(relation.to_be_bytes());
        m.push(b'N');
        m.extend(2_i16.to_be_bytes());
        m.push(b't');
        m.extend(1_i32.to_be_bytes());
        m.push(b'7');
        match topic {
            Some(t) => {
                m.push(b't');
                m.extend(i32::try_from(t.len()).expect("short").to_be_bytes());
                m.extend(t.as_bytes());
            }
            None => m.push(b'n'),
        }
        m
    }

    #[test]
    fn an_insert_is_read_with_the_columns_its_relation_described() {
        let mut d = Decoder::default();
        assert_eq!(d.decode(&relation()), Ok(Change::Other));
        assert_eq!(
            d.decode(&insert(16_385, Some("ordership.order.events"))),
            Ok(Change::Insert {
                table: ("orders", "outbox"),
                values: vec![
                    ("id".into(), Some("7".into())),
                    ("topic".into(), Some("ordership.order.events".into())),
                ],
            })
        );
        assert_eq!(
            d.decode(&insert(16_385, None)),
            Ok(Change::Insert {
                table: ("orders", "outbox"),
                values: vec![("id".into(), Some("7".into())), ("topic".into(), None)],
            })
        );
        assert_eq!(d.decode(b"C\0"), Ok(Change::Commit));
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        let mut d = Decoder::default();
        assert!(d.decode(&insert(16_385, Some("x"))).is_err(), "undescribed");
        let r = relation();
        for cut in 1..r.len() {
            assert!(
                Decoder::default().decode(&r[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        d.decode(&r).expect("relation");
        let i = insert(16_385, Some("topic"));
        for cut in 1..i.len() {
            assert!(d.decode(&i[..cut]).is_err(), "cut at {cut}");
        }
    }
}
