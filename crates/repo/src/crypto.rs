//! Keys, content ids, and sealing (compression + authenticated encryption).
//!
//! A repository has one *repository key* of 64 random bytes: 32 for AES-256-GCM (the data
//! key) and 32 for keyed BLAKE3 (the id key). Block ids are `BLAKE3-keyed(id key, block)`, so
//! they reveal nothing about the content to whoever lacks the key, yet equal blocks get equal
//! ids and are stored once. The repository key is stored wrapped (AES-256-GCM) under a
//! key-encryption key derived from a passphrase (argon2id, memory-hard) or read from a key
//! file (which stands in for a KMS key until the cloud exists).
//!
//! An unencrypted repository has no key: ids are plain BLAKE3 and sealing only compresses.
//!
//! Nonces are 96 random bits per sealing. AES-GCM stays within its bounds for 2^32 sealings
//! per key, which is 2 PiB of distinct 512 KiB blocks.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::RepoError;
use crate::id::Id;

/// Bytes AES-GCM adds to a sealed text: the nonce before, the tag after.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

/// The zstd level of blocks and metadata: level 1 is the fastest that still compresses
/// file-like data well; higher levels cost more CPU than they save in S3 storage.
const ZSTD_LEVEL: i32 = 1;

/// argon2id parameters for passphrases: 64 MiB and one pass, above OWASP's recommended
/// argon2id setting (46 MiB, one pass), about 0.1 s here. Every command that opens the
/// repository pays it, so three passes (0.3 s) would dominate small incremental backups. The
/// parameters are stored with each key, so raising them later breaks nothing.
const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_PASSES: u32 = 1;

/// Fills `buf` with random bytes from the operating system.
pub fn random(buf: &mut [u8]) -> Result<(), RepoError> {
    SystemRandom::new().fill(buf).map_err(|_| RepoError::Random)
}

/// How a repository's data is protected.
#[derive(Clone)]
pub enum Keys {
    /// Encrypted: the data key and the id key.
    Encrypted {
        /// AES-256-GCM key for blocks and metadata.
        data: std::sync::Arc<LessSafeKey>,
        /// Key of the keyed BLAKE3 that names blocks (wiped when dropped; the AES key lives in
        /// ring's key schedule, which this crate cannot wipe).
        id: Zeroizing<[u8; 32]>,
    },
    /// Not encrypted (chosen explicitly at init).
    None,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str(match self {
            Keys::Encrypted { .. } => "Keys::Encrypted(..)",
            Keys::None => "Keys::None",
        })
    }
}

impl Keys {
    /// Keys from the 64 bytes of a repository key.
    pub fn from_master(master: &[u8; 64]) -> Result<Self, RepoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &master[..32]).map_err(|_| RepoError::Random)?;
        let mut id = Zeroizing::new([0u8; 32]);
        id.copy_from_slice(&master[32..]);
        Ok(Keys::Encrypted {
            data: std::sync::Arc::new(LessSafeKey::new(unbound)),
            id,
        })
    }

    /// The id of a block: keyed BLAKE3 when encrypted, plain BLAKE3 otherwise.
    pub fn block_id(&self, block: &[u8]) -> Id {
        match self {
            Keys::Encrypted { id, .. } => Id(*blake3::keyed_hash(id, block).as_bytes()),
            Keys::None => Id(*blake3::hash(block).as_bytes()),
        }
    }

    /// Compresses `plain` and appends it, sealed under `aad`, to `out`.
    pub fn seal_into(
        &self,
        compressor: &mut Compressor,
        plain: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RepoError> {
        let compressed = compressor.compress(plain)?;
        match self {
            Keys::None => out.extend_from_slice(compressed),
            Keys::Encrypted { data, .. } => {
                let mut nonce = [0u8; NONCE_LEN];
                random(&mut nonce)?;
                out.extend_from_slice(&nonce);
                let start = out.len();
                out.extend_from_slice(compressed);
                let tag = data
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut out[start..],
                    )
                    .map_err(|_| RepoError::Random)?;
                out.extend_from_slice(tag.as_ref());
            }
        }
        Ok(())
    }

    /// Compresses and seals `plain` into a new buffer.
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, RepoError> {
        let mut out = Vec::new();
        self.seal_into(&mut Compressor::new()?, plain, aad, &mut out)?;
        Ok(out)
    }

    /// Authenticates, decrypts and decompresses `sealed` (sealed under `aad`); `raw_length`
    /// bounds the decompressed size. Fails with `Unauthentic` if the data was altered or the
    /// key is wrong.
    pub fn open(
        &self,
        sealed: &[u8],
        aad: &[u8],
        raw_length: usize,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<u8>, RepoError> {
        let compressed: std::borrow::Cow<'_, [u8]> = match self {
            Keys::None => sealed.into(),
            Keys::Encrypted { data, .. } => {
                if sealed.len() < SEAL_OVERHEAD {
                    return Err(RepoError::Unauthentic(what()));
                }
                let (nonce, rest) = sealed.split_at(NONCE_LEN);
                let nonce =
                    Nonce::try_assume_unique_for_key(nonce).map_err(|_| RepoError::Unauthentic(what()))?;
                let mut buf = rest.to_vec();
                let plain_len = data
                    .open_in_place(nonce, Aad::from(aad), &mut buf)
                    .map_err(|_| RepoError::Unauthentic(what()))?
                    .len();
                buf.truncate(plain_len);
                buf.into()
            }
        };
        decompress(&compressed, raw_length).map_err(|e| RepoError::Corrupt(format!("{}: {e}", what())))
    }
}

/// Declared sizes up to this are trusted for one allocation (a block is 512 KiB); beyond,
/// the output grows only as data actually decompresses, so a tiny frame that declares a
/// gigabyte allocates nothing for it.
const TRUSTED_DECLARED: u64 = 1 << 20;

/// Decompresses zstd data of at most `limit` bytes, allocating only for what the data holds:
/// a frame that declares a small size gets a buffer of that size; a larger one, or one that
/// declares none, is decompressed as a stream that stops at `limit`.
fn decompress(compressed: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let too_large = || format!("decompresses to more than {limit} bytes, the most it may hold");
    match zstd::zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(size)) if size > limit as u64 => Err(too_large()),
        Ok(Some(size)) if size <= TRUSTED_DECLARED => {
            let mut out = Vec::with_capacity(usize::try_from(size).map_err(|_| too_large())?);
            zstd::bulk::Decompressor::new()
                .and_then(|mut d| d.decompress_to_buffer(compressed, &mut out))
                .map_err(|_| "does not decompress".to_owned())?;
            Ok(out)
        }
        _ => {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::with_buffer(compressed)
                .and_then(|d| d.take(limit as u64 + 1).read_to_end(&mut out))
                .map_err(|_| "does not decompress".to_owned())?;
            if out.len() > limit {
                return Err(too_large());
            }
            Ok(out)
        }
    }
}

/// A reusable zstd compressor with its output buffer (one per thread).
pub struct Compressor {
    zstd: zstd::bulk::Compressor<'static>,
    buf: Vec<u8>,
}

impl Compressor {
    /// A compressor at Bulwark's level.
    pub fn new() -> Result<Self, RepoError> {
        let zstd =
            zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| RepoError::Corrupt(format!("zstd: {e}")))?;
        Ok(Self {
            zstd,
            buf: Vec::new(),
        })
    }

    fn compress(&mut self, plain: &[u8]) -> Result<&[u8], RepoError> {
        self.buf.clear();
        self.buf.reserve(zstd::zstd_safe::compress_bound(plain.len()));
        self.zstd
            .compress_to_buffer(plain, &mut self.buf)
            .map_err(|e| RepoError::Corrupt(format!("zstd: {e}")))?;
        Ok(&self.buf)
    }
}

// ---- wrapping the repository key ------------------------------------------------------------

/// What unlocks a repository.
#[derive(Clone)]
pub enum Secret {
    /// A passphrase, stretched with argon2id.
    Passphrase(String),
    /// A 32-byte key-encryption key (a key file; later a KMS key).
    KeyFile([u8; 32]),
    /// No secret: the repository is, or is to be, unencrypted.
    None,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Passphrase(_) => "Secret::Passphrase(..)",
            Secret::KeyFile(_) => "Secret::KeyFile(..)",
            Secret::None => "Secret::None",
        })
    }
}

/// A passphrase or key is wiped from memory when the secret is dropped.
impl Drop for Secret {
    fn drop(&mut self) {
        match self {
            Secret::Passphrase(p) => p.zeroize(),
            Secret::KeyFile(k) => k.zeroize(),
            Secret::None => {}
        }
    }
}

impl Secret {
    /// Reads a key file: 64 hex digits (whitespace around them ignored), or exactly 32 bytes.
    pub fn from_key_file(content: &[u8], path: &str) -> Result<Self, RepoError> {
        let text = std::str::from_utf8(content).map(str::trim).unwrap_or("");
        let mut key = [0u8; 32];
        if hex::decode_to_slice(text, &mut key).is_ok() {
            return Ok(Secret::KeyFile(key));
        }
        if content.len() == 32 {
            key.copy_from_slice(content);
            return Ok(Secret::KeyFile(key));
        }
        Err(RepoError::BadKeyFile(format!(
            "{path}: expected 64 hex digits (a 256-bit key), like the output of `openssl rand -hex 32`"
        )))
    }
}

/// A stored, wrapped repository key (`keys/<id>`), as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyFile {
    /// `passphrase` or `key-file`.
    pub kind: String,
    /// The KDF, for passphrases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kdf: Option<Kdf>,
    /// Hex of nonce || AES-256-GCM(repository key) || tag, AAD `bulwark repository key`.
    pub wrapped: String,
}

/// argon2id parameters, stored so that they can change without breaking old repositories.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Kdf {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub passes: u32,
    /// Lanes.
    pub lanes: u32,
    /// Hex of the 16-byte salt.
    pub salt: String,
}

const WRAP_AAD: &[u8] = b"bulwark repository key";

fn kek_cipher(kek: &[u8; 32]) -> Result<LessSafeKey, RepoError> {
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, kek).map_err(|_| RepoError::Random)?,
    ))
}

/// The key-encryption key of a passphrase. The parameters come from a key file, which
/// [`crate::decode::key_file`] has bounded.
fn argon2(passphrase: &str, kdf: &Kdf) -> Result<Zeroizing<[u8; 32]>, RepoError> {
    let salt = hex::decode(&kdf.salt).map_err(|_| RepoError::Corrupt("key file: bad salt".into()))?;
    let params = argon2::Params::new(kdf.memory_kib, kdf.passes, kdf.lanes, Some(32))
        .map_err(|e| RepoError::Corrupt(format!("key file: bad argon2 parameters: {e}")))?;
    let mut kek = Zeroizing::new([0u8; 32]);
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), &salt, &mut *kek)
        .map_err(|e| RepoError::Corrupt(format!("argon2: {e}")))?;
    Ok(kek)
}

/// Wraps `master` under `secret`.
pub fn wrap(master: &[u8; 64], secret: &Secret) -> Result<KeyFile, RepoError> {
    let (kind, kdf, kek) = match secret {
        Secret::Passphrase(p) => {
            let mut salt = [0u8; 16];
            random(&mut salt)?;
            let kdf = Kdf {
                algorithm: "argon2id".into(),
                memory_kib: ARGON2_MEMORY_KIB,
                passes: ARGON2_PASSES,
                lanes: 1,
                salt: hex::encode(salt),
            };
            let kek = argon2(p, &kdf)?;
            ("passphrase", Some(kdf), kek)
        }
        Secret::KeyFile(k) => ("key-file", None, Zeroizing::new(*k)),
        Secret::None => return Err(RepoError::NoSecret),
    };
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    let mut buf = Zeroizing::new(master.to_vec());
    kek_cipher(&kek)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(WRAP_AAD),
            &mut *buf,
        )
        .map_err(|_| RepoError::Random)?;
    let mut wrapped = nonce.to_vec();
    wrapped.extend(buf.iter());
    Ok(KeyFile {
        kind: kind.into(),
        kdf,
        wrapped: hex::encode(wrapped),
    })
}

/// Unwraps a stored key with `secret`; `None` if the secret does not open it.
pub fn unwrap(file: &KeyFile, secret: &Secret) -> Result<Option<Zeroizing<[u8; 64]>>, RepoError> {
    let kek = match (secret, &file.kdf) {
        (Secret::Passphrase(p), Some(kdf)) if file.kind == "passphrase" => argon2(p, kdf)?,
        (Secret::KeyFile(k), _) if file.kind == "key-file" => Zeroizing::new(*k),
        _ => return Ok(None),
    };
    let wrapped = hex::decode(&file.wrapped).map_err(|_| RepoError::Corrupt("key file: bad hex".into()))?;
    if wrapped.len() < NONCE_LEN {
        return Err(RepoError::Corrupt("key file: too short".into()));
    }
    let (nonce, rest) = wrapped.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| RepoError::Corrupt("key file: bad nonce".into()))?;
    let mut buf = Zeroizing::new(rest.to_vec());
    let Ok(plain) = kek_cipher(&kek)?.open_in_place(nonce, Aad::from(WRAP_AAD), &mut buf) else {
        return Ok(None);
    };
    let mut master = Zeroizing::new([0u8; 64]);
    if plain.len() != 64 {
        return Err(RepoError::Corrupt("key file: wrong key length".into()));
    }
    master.copy_from_slice(plain);
    Ok(Some(master))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        let mut master = [0u8; 64];
        random(&mut master).unwrap();
        Keys::from_master(&master).unwrap()
    }

    #[test]
    fn sealing_round_trips_and_detects_tampering() {
        let k = keys();
        let plain = vec![7u8; 100_000];
        let sealed = k.seal(&plain, b"aad").unwrap();
        assert!(sealed.len() < 1000, "compressed: {}", sealed.len());
        assert_eq!(
            k.open(&sealed, b"aad", plain.len(), &|| "x".into()).unwrap(),
            plain
        );
        assert!(matches!(
            k.open(&sealed, b"other", plain.len(), &|| "x".into()),
            Err(RepoError::Unauthentic(_))
        ));
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(matches!(
            k.open(&bad, b"aad", plain.len(), &|| "x".into()),
            Err(RepoError::Unauthentic(_))
        ));
        assert!(matches!(
            keys().open(&sealed, b"aad", plain.len(), &|| "x".into()),
            Err(RepoError::Unauthentic(_))
        ));
    }

    /// A zstd frame of `payload` raw bytes that declares `declared` bytes of content.
    fn lying_frame(declared: u64, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd]; // magic
        f.push(0b1110_0000); // 8-byte content size, single segment
        f.extend_from_slice(&declared.to_le_bytes());
        let header = 1 | ((payload.len() as u32) << 3); // last block, raw
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_frame_declaring_a_huge_size_is_not_believed() {
        assert_eq!(decompress(&lying_frame(5, b"hello"), 100).unwrap(), b"hello");
        // 900 MB declared, five bytes there: refused, without a buffer of the declared size.
        let started = std::time::Instant::now();
        assert!(decompress(&lying_frame(900 << 20, b"hello"), 1 << 30).is_err());
        assert!(started.elapsed().as_millis() < 500);
        let err = decompress(&lying_frame(5 << 30, b"hello"), 1 << 30).unwrap_err();
        assert!(err.contains("more than 1073741824 bytes"), "{err}");
    }

    #[test]
    fn block_ids_depend_on_the_key() {
        let (a, b) = (keys(), keys());
        let block = [1u8; 4096];
        assert_eq!(a.block_id(&block), a.block_id(&block));
        assert_ne!(a.block_id(&block), b.block_id(&block));
        assert_eq!(Keys::None.block_id(&block), Id(*blake3::hash(&block).as_bytes()));
    }

    #[test]
    fn wrapped_keys_open_only_with_their_secret() {
        let mut master = [0u8; 64];
        random(&mut master).unwrap();
        let file = wrap(&master, &Secret::Passphrase("correct horse".into())).unwrap();
        assert_eq!(
            unwrap(&file, &Secret::Passphrase("correct horse".into())).unwrap(),
            Some(Zeroizing::new(master))
        );
        assert_eq!(unwrap(&file, &Secret::Passphrase("wrong".into())).unwrap(), None);
        assert_eq!(unwrap(&file, &Secret::KeyFile([0; 32])).unwrap(), None);
        let file = wrap(&master, &Secret::KeyFile([9; 32])).unwrap();
        assert_eq!(
            unwrap(&file, &Secret::KeyFile([9; 32])).unwrap(),
            Some(Zeroizing::new(master))
        );
        assert_eq!(unwrap(&file, &Secret::KeyFile([8; 32])).unwrap(), None);
    }

    #[test]
    fn key_files_are_hex_or_raw() {
        let hex_text = format!("{}\n", "ab".repeat(32));
        assert!(
            matches!(Secret::from_key_file(hex_text.as_bytes(), "k"), Ok(Secret::KeyFile(k)) if k == [0xab; 32])
        );
        assert!(matches!(Secret::from_key_file(&[5u8; 32], "k"), Ok(Secret::KeyFile(k)) if k == [5; 32]));
        assert!(Secret::from_key_file(b"too short", "k").is_err());
    }
}
