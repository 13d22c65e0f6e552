//! The session queue's sealed channel: every message between the appliance and its worker is
//! encrypted and authenticated with a key of the session, so that someone who can read the
//! queue learns nothing (not the repository key, not the repository role's credentials), and
//! someone who can write it cannot forge a task, a report or a `Done`.
//!
//! The appliance draws a 256-bit key for each session and hands it to the worker in its user
//! data (which reaches the instance over EC2's API and its metadata service, IMDSv2 only, hop
//! limit 1; never the queue). From it, HKDF-SHA256 derives one AES-256-GCM key per direction,
//! so that a message cannot be sent back to its sender as the other side's. A message on the
//! queue is `{"protocol": 2, "to": "worker"|"appliance", "sealed": base64(nonce || ciphertext
//! || tag)}`; the associated data binds it to its direction. A message that does not open
//! with its direction's key was not written by the session, and is refused.
//!
//! What it does not do: whoever can read the worker's user data (`ec2:DescribeInstanceAttribute`
//! in the worker's account) or run code on the worker holds the key, as they hold the worker;
//! a message of this session can be sent again by someone who copied it (a replay: the worker
//! takes one task and the appliance one end, so a copy changes nothing but progress).

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::worker::{ProtocolError, WorkerMessage, PROTOCOL};

/// Largest sealed message accepted, before it is decoded (SQS's own limit is 256 KiB).
const MAX_BODY: usize = 1 << 20;

/// The key of one session's channel, 256 bits.
#[derive(Clone)]
pub struct SessionKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<SessionKey, ProtocolError> {
        let mut key = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(&mut *key)
            .map_err(|_| ProtocolError::Malformed("no random numbers from the operating system".into()))?;
        Ok(SessionKey(key))
    }

    /// The key from its 64 hex digits (as the user data carries it).
    pub fn from_hex(text: &str) -> Option<SessionKey> {
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut *key).ok()?;
        Some(SessionKey(key))
    }

    /// Its 64 hex digits.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(*self.0))
    }
}

/// Which end of the channel a program is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The appliance, which sends tasks and credentials.
    Appliance,
    /// The worker, which sends progress and how it ended.
    Worker,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Appliance => Side::Worker,
            Side::Worker => Side::Appliance,
        }
    }

    fn aad(self) -> &'static [u8] {
        match self {
            Side::Appliance => b"bulwark queue message to the appliance",
            Side::Worker => b"bulwark queue message to the worker",
        }
    }
}

/// A message as it travels.
#[derive(Serialize, Deserialize)]
struct Sealed {
    protocol: u32,
    to: Side,
    sealed: String,
}

/// One end of a session's channel.
pub struct Channel {
    me: Side,
    to_worker: LessSafeKey,
    to_appliance: LessSafeKey,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// The channel of `key`, as `me` speaks it.
    pub fn new(key: &SessionKey, me: Side) -> Result<Channel, ProtocolError> {
        Ok(Channel {
            me,
            to_worker: direction_key(key, Side::Worker)?,
            to_appliance: direction_key(key, Side::Appliance)?,
        })
    }

    /// `message`, sealed for the other side.
    pub fn seal(&self, message: &WorkerMessage) -> Result<String, ProtocolError> {
        let to = self.me.other();
        let mut data = serde_json::to_vec(message).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| ProtocolError::Malformed("no random numbers from the operating system".into()))?;
        self.key(to)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(to.aad()),
                &mut data,
            )
            .map_err(|_| ProtocolError::Malformed("sealing failed".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        serde_json::to_string(&Sealed {
            protocol: PROTOCOL,
            to,
            sealed: base64::engine::general_purpose::STANDARD.encode(sealed),
        })
        .map_err(|e| ProtocolError::Malformed(e.to_string()))
    }

    /// A body off the queue, and whom it is addressed to (either side may take the other's
    /// messages off the queue: the worker its own progress reports, which newer ones
    /// replace). A message of another release is refused by its version, one that does not
    /// open with the session's key for its direction as forged.
    pub fn open(&self, body: &str) -> Result<(Side, WorkerMessage), ProtocolError> {
        if body.len() > MAX_BODY {
            return Err(ProtocolError::Malformed(format!(
                "a message of {} bytes",
                body.len()
            )));
        }
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        let found = value
            .get("protocol")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if found != u64::from(PROTOCOL) {
            return Err(ProtocolError::Version { found });
        }
        let sealed: Sealed = serde_json::from_value(value).map_err(|_| ProtocolError::Forged)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed.sealed)
            .map_err(|_| ProtocolError::Forged)?;
        let (nonce, rest) = bytes.split_at_checked(NONCE_LEN).ok_or(ProtocolError::Forged)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ProtocolError::Forged)?;
        let mut data = Zeroizing::new(rest.to_vec());
        let plain = self
            .key(sealed.to)
            .open_in_place(nonce, Aad::from(sealed.to.aad()), &mut data)
            .map_err(|_| ProtocolError::Forged)?;
        let message = serde_json::from_slice(plain).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        Ok((sealed.to, message))
    }

    fn key(&self, to: Side) -> &LessSafeKey {
        match to {
            Side::Worker => &self.to_worker,
            Side::Appliance => &self.to_appliance,
        }
    }
}

/// The AES-256-GCM key of messages to `to`: HKDF-SHA256 of the session key.
fn direction_key(key: &SessionKey, to: Side) -> Result<LessSafeKey, ProtocolError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"bulwark session queue").extract(&*key.0);
    let info = [to.aad()];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .map_err(|_| ProtocolError::Malformed("the session key cannot be expanded".into()))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Channel, Channel) {
        let key = SessionKey::generate().unwrap();
        (
            Channel::new(&key, Side::Appliance).unwrap(),
            Channel::new(&key, Side::Worker).unwrap(),
        )
    }

    #[test]
    fn each_side_opens_what_the_other_sealed_and_only_that() {
        let (appliance, worker) = pair();
        let done = WorkerMessage::Done {
            points: vec![("vol-1".into(), "ab".into())],
            instance: None,
        };
        let body = worker.seal(&done).unwrap();
        assert_eq!(appliance.open(&body).unwrap(), (Side::Appliance, done.clone()));
        // The sender sees it is its own; sent back as the other side's, it is forged.
        assert_eq!(worker.open(&body).unwrap(), (Side::Appliance, done));
        let reflected = body.replace("\"to\":\"appliance\"", "\"to\":\"worker\"");
        assert!(matches!(worker.open(&reflected), Err(ProtocolError::Forged)));
    }

    #[test]
    fn a_message_of_another_key_or_tampered_with_is_forged() {
        let (appliance, _) = pair();
        let (_, stranger) = pair();
        let forged = stranger
            .seal(&WorkerMessage::Done {
                points: Vec::new(),
                instance: None,
            })
            .unwrap();
        assert!(matches!(appliance.open(&forged), Err(ProtocolError::Forged)));
        let (appliance, worker) = pair();
        let body = worker
            .seal(&WorkerMessage::Progress { done: 1, total: 2 })
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(value["sealed"].as_str().unwrap())
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = body.replace(
            value["sealed"].as_str().unwrap(),
            &base64::engine::general_purpose::STANDARD.encode(&bytes),
        );
        assert!(matches!(appliance.open(&tampered), Err(ProtocolError::Forged)));
        // A plain message, as an attacker who can only write the queue would send it.
        let plain = format!(r#"{{"protocol":{PROTOCOL},"to":"appliance","type":"done","points":[]}}"#);
        assert!(matches!(appliance.open(&plain), Err(ProtocolError::Forged)));
        assert!(matches!(
            appliance.open(r#"{"type":"done","points":[]}"#),
            Err(ProtocolError::Version { found: 0 })
        ));
    }

    /// Writes the seeds of the `worker_message` fuzz target: messages sealed with its fixed
    /// key, each way. Run by hand: `cargo test -p bulwark-engine write_worker_message_seeds --
    /// --ignored`.
    #[test]
    #[ignore = "writes the fuzz seeds; run by hand when the protocol changes"]
    fn write_worker_message_seeds() {
        let key = SessionKey::from_hex(&"42".repeat(32)).unwrap();
        let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap())
            .join("../../fuzz/seeds/worker_message");
        std::fs::create_dir_all(&dir).unwrap();
        let done = WorkerMessage::Done {
            points: vec![("vol-0aaaaaaaaaaaaaaaa".into(), "ab".repeat(32))],
            instance: Some(r#"{"version":1,"instance":"i-0123456789abcdef0","account":"222222222222","region":"us-east-1","security_groups":[],"boot":{},"tags":[],"volumes":[]}"#.into()),
        };
        let progress = WorkerMessage::Progress { done: 1, total: 2 };
        std::fs::write(
            dir.join("done"),
            Channel::new(&key, Side::Worker).unwrap().seal(&done).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("progress"),
            Channel::new(&key, Side::Worker).unwrap().seal(&progress).unwrap(),
        )
        .unwrap();
        if let WorkerMessage::Done {
            instance: Some(record),
            ..
        } = done
        {
            std::fs::write(dir.join("instance-record"), record).unwrap();
        }
    }

    #[test]
    fn the_sealed_body_shows_nothing_of_the_message() {
        let (appliance, _) = pair();
        let body = appliance
            .seal(&WorkerMessage::Failed {
                error: "a-very-recognisable-secret".into(),
            })
            .unwrap();
        assert!(
            !body.contains("recognisable") && !body.contains("failed"),
            "{body}"
        );
        let key = SessionKey::generate().unwrap();
        assert_eq!(
            SessionKey::from_hex(&key.to_hex()).unwrap().to_hex(),
            key.to_hex()
        );
        assert!(SessionKey::from_hex("not hex").is_none());
        assert_eq!(format!("{key:?}"), "SessionKey(..)");
    }
}
