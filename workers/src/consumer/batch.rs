//! Turning what was read from the log into per-partition batches: decode, split off poison, group.

use concert_core::commands::CommandEnvelope;

/// Decodes a command. `Err` carries the reason a message is parked as a dead letter.
pub(crate) fn decode(payload: Option<&[u8]>) -> Result<CommandEnvelope, String> {
    let payload = payload.ok_or_else(|| "empty payload".to_owned())?;
    serde_json::from_slice(payload).map_err(|e| format!("not a command envelope: {e}"))
}

/// Groups messages by (topic, partition), keeping log order inside each group and the order in which
/// partitions first appear.
pub(crate) fn group_by_partition<M>(
    messages: Vec<M>,
    key: impl Fn(&M) -> (String, i32),
) -> Vec<((String, i32), Vec<M>)> {
    let mut groups: Vec<((String, i32), Vec<M>)> = Vec::new();
    for message in messages {
        let k = key(&message);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, members)) => members.push(message),
            None => groups.push((k, vec![message])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use concert_core::commands::Command;
    use uuid::Uuid;

    #[test]
    fn groups_keep_log_order() {
        let read = vec![
            ("a", 0, 10),
            ("b", 1, 5),
            ("a", 0, 11),
            ("a", 1, 3),
            ("b", 1, 6),
        ];
        let groups = group_by_partition(read, |m| (m.0.to_owned(), m.1));
        let shape: Vec<_> = groups
            .iter()
            .map(|((t, p), ms)| (t.as_str(), *p, ms.iter().map(|m| m.2).collect::<Vec<_>>()))
            .collect();
        assert_eq!(
            shape,
            [
                ("a", 0, vec![10, 11]),
                ("b", 1, vec![5, 6]),
                ("a", 1, vec![3])
            ]
        );
    }

    #[test]
    fn decode_accepts_envelopes_and_names_the_reason_otherwise() {
        let env = CommandEnvelope::new(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Command::Join {
                concert_id: Uuid::new_v4(),
            },
        );
        let bytes = serde_json::to_vec(&env).unwrap();
        assert_eq!(decode(Some(&bytes)).unwrap(), env);
        assert_eq!(decode(None).unwrap_err(), "empty payload");
        assert!(decode(Some(b"{\"kind\":\"JOIN\"}"))
            .unwrap_err()
            .starts_with("not a command envelope"));
        assert!(decode(Some(b"\xff\xfe")).is_err());
    }
}
