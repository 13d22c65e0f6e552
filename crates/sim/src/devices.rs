//! Instances at run time: the program an instance boots runs on a thread, sees its attached
//! volumes as block devices over the block store, and gets its instance profile's credentials.
//! A machine can die (an injected fault): its devices fail and the instance stops.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bulwark_cloud::policy::{Policy, Principal, Request};
use bulwark_cloud::{Cloud, CloudError, Credentials, EBS_BLOCK_SIZE};
use bulwark_host::{Device, InstanceHost};
use bulwark_model::{AccountId, Action, InstanceId, Region, VolumeId};

use crate::state::{Identity, World};
use crate::store::locate;
use crate::{lock, Inner, Sim};

/// A running instance's process-local state.
pub(crate) struct Machine {
    pub id: InstanceId,
    pub account: AccountId,
    pub region: Region,
    alive: AtomicBool,
    finished: AtomicBool,
    /// Bytes of device I/O left before an injected death; `u64::MAX` for none.
    budget: AtomicU64,
    /// Device I/O in bytes per second, if slowed by an injected fault, and when the I/O
    /// already granted ends (shared by the machine's threads).
    pace: Option<u64>,
    paced_until: std::sync::Mutex<std::time::Instant>,
}

impl Machine {
    pub fn new(
        id: InstanceId,
        account: AccountId,
        region: Region,
        dies_after: Option<u64>,
        pace: Option<u64>,
    ) -> Self {
        Self {
            id,
            account,
            region,
            alive: AtomicBool::new(true),
            finished: AtomicBool::new(false),
            budget: AtomicU64::new(dies_after.unwrap_or(u64::MAX)),
            pace: pace.filter(|p| *p > 0),
            paced_until: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    pub fn set_finished(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

impl Inner {
    fn instance_mut<'w>(&self, world: &'w mut World, m: &Machine) -> Option<&'w mut crate::state::Instance> {
        world
            .accounts
            .get_mut(&m.account)?
            .regions
            .get_mut(&m.region)?
            .instances
            .get_mut(&m.id)
    }

    /// Spends I/O budget; when it runs out the machine dies and the instance stops.
    fn spend(&self, m: &Machine, bytes: u64) -> io::Result<()> {
        if !m.alive() {
            return Err(io::Error::other(format!("instance {} is not running", m.id)));
        }
        if let Some(pace) = m.pace {
            let until = {
                let mut until = m.paced_until.lock().unwrap_or_else(|e| e.into_inner());
                let start = (*until).max(std::time::Instant::now());
                *until = start + std::time::Duration::from_secs_f64(bytes as f64 / pace as f64);
                *until
            };
            std::thread::sleep(until.saturating_duration_since(std::time::Instant::now()));
        }
        let before = m
            .budget
            .fetch_sub(bytes.min(m.budget.load(Ordering::SeqCst)), Ordering::SeqCst);
        if before != u64::MAX && before <= bytes {
            m.stop();
            let mut world = self.world().map_err(io::Error::other)?;
            if let Some(i) = self.instance_mut(&mut world, m) {
                i.state = "stopped".into();
                i.state_reason = Some("Server.InternalError: the instance failed (injected fault)".into());
            }
            return Err(io::Error::other(format!("instance {} died", m.id)));
        }
        Ok(())
    }
}

/// An attached volume, as its instance sees it.
struct VolumeDevice {
    inner: Arc<Inner>,
    machine: Arc<Machine>,
    volume: VolumeId,
    size: u64,
}

impl VolumeDevice {
    fn key(&self) -> (AccountId, Region, VolumeId) {
        (
            self.machine.account.clone(),
            self.machine.region.clone(),
            self.volume.clone(),
        )
    }

    /// The volume's block map as this machine sees it (its writes not yet saved included), if
    /// the volume is still attached to it.
    fn with_map<T>(&self, f: impl FnOnce(&crate::store::BlockMap) -> T) -> io::Result<T> {
        let world = self.inner.read().map_err(io::Error::other)?;
        let volume = world
            .accounts
            .get(&self.machine.account)
            .and_then(|a| a.regions.get(&self.machine.region))
            .and_then(|r| r.volumes.get(&self.volume))
            .filter(|v| v.attachment.as_ref().is_some_and(|(i, _)| i == &self.machine.id))
            .ok_or_else(|| {
                io::Error::other(format!(
                    "{} is no longer attached to {}",
                    self.volume, self.machine.id
                ))
            })?;
        let mut map = volume.blocks.clone();
        if let Some(written) = crate::lock(&self.inner.shared.unsaved).volumes.get(&self.key()) {
            for (index, hash) in written {
                match hash {
                    Some(h) => map.insert(*index, *h),
                    None => map.remove(index),
                };
            }
        }
        Ok(f(&map))
    }

    /// The content of one block as this machine sees it.
    fn block(&self, index: u64) -> io::Result<Option<crate::store::BlockHash>> {
        let unsaved = crate::lock(&self.inner.shared.unsaved)
            .volumes
            .get(&self.key())
            .and_then(|w| w.get(&index).copied());
        match unsaved {
            Some(hash) => {
                // Still attached? A detached volume's writes are saved; no more come.
                self.with_map(|_| ())?;
                Ok(hash)
            }
            None => self.with_map(|map| map.get(&index).copied()),
        }
    }
}

impl Device for VolumeDevice {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.spend(&self.machine, buf.len() as u64)?;
        let mut done = 0;
        let mut block = vec![0u8; EBS_BLOCK_SIZE as usize];
        while done < buf.len() {
            let (index, within) = locate(offset + done as u64);
            let n = (EBS_BLOCK_SIZE as usize - within).min(buf.len() - done);
            let hash = self.block(index)?;
            self.inner.store.read(hash.as_ref(), &mut block)?;
            buf[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.spend(&self.machine, data.len() as u64)?;
        if offset + data.len() as u64 > self.size {
            return Err(io::Error::other("write past the end of the volume"));
        }
        let mut done = 0;
        let mut block = vec![0u8; EBS_BLOCK_SIZE as usize];
        while done < data.len() {
            let (index, within) = locate(offset + done as u64);
            let n = (EBS_BLOCK_SIZE as usize - within).min(data.len() - done);
            if n < EBS_BLOCK_SIZE as usize {
                let hash = self.block(index)?;
                self.inner.store.read(hash.as_ref(), &mut block)?;
            }
            block[within..within + n].copy_from_slice(&data[done..done + n]);
            let hash = self.inner.store.put(&block)?;
            self.with_map(|_| ())?;
            crate::lock(&self.inner.shared.unsaved)
                .volumes
                .entry(self.key())
                .or_default()
                .insert(index, hash);
            done += n;
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        // A world to change merges this process's writes, and saves them when dropped.
        let mut world = self.inner.world().map_err(io::Error::other)?;
        world.save().map_err(io::Error::other)
    }

    fn written_blocks(&self) -> Option<Vec<u64>> {
        self.with_map(|map| map.keys().copied().collect()).ok()
    }
}

/// What a booted program sees.
pub(crate) struct Host {
    pub sim: Sim,
    pub machine: Arc<Machine>,
}

impl InstanceHost for Host {
    fn instance_id(&self) -> &InstanceId {
        &self.machine.id
    }

    fn region(&self) -> &Region {
        &self.machine.region
    }

    /// The instance metadata service: credentials of the profile's role, if EC2 may assume it.
    fn credentials(&self) -> Result<Credentials, CloudError> {
        let action = Action::StsAssumeRole;
        let inner = &self.sim.inner;
        let mut world = inner
            .world()
            .map_err(|e| crate::SimError::unavailable(action, e))?;
        let m = &self.machine;
        let profile = inner
            .instance_mut(&mut world, m)
            .and_then(|i| i.profile.clone())
            .ok_or_else(|| {
                CloudError::not_found(
                    action,
                    "NoInstanceProfile",
                    format!("{} has no instance profile", m.id),
                )
            })?;
        let name = profile.rsplit('/').next().unwrap_or_default().to_owned();
        let account = world.accounts.get(&m.account);
        let role_name = account
            .and_then(|a| a.profiles.get(&name))
            .and_then(|p| p.role.clone())
            .ok_or_else(|| {
                CloudError::not_found(
                    action,
                    "NoSuchEntity",
                    format!("instance profile {profile} holds no role"),
                )
            })?;
        let role = account.and_then(|a| a.roles.get(&role_name)).ok_or_else(|| {
            CloudError::not_found(action, "NoSuchEntity", format!("role {role_name} does not exist"))
        })?;
        let trust = Policy::parse(&role.trust)
            .map_err(|e| CloudError::invalid(action, "MalformedPolicy", e.to_string()))?;
        let ec2 = Principal::Service("ec2.amazonaws.com".into());
        let context = Default::default();
        let request = Request {
            principal: &ec2,
            action,
            resource: &crate::auth::role_arn(&world, &m.account, &role_name),
            context: &context,
        };
        let allowed = bulwark_cloud::policy::authorize(
            &request,
            &[],
            Some(bulwark_cloud::policy::ResourcePolicy {
                document: &trust,
                owner: &m.account,
                kind: bulwark_cloud::policy::ResourcePolicyKind::TrustPolicy,
            }),
        );
        if !allowed.is_allowed() {
            return Err(CloudError::denied(
                action,
                format!("the trust policy of role {role_name} does not let ec2.amazonaws.com assume it"),
            ));
        }
        let identity = Identity::Role {
            account: m.account.clone(),
            name: role_name,
            session: m.id.to_string(),
        };
        let creds = crate::admin::issue(&mut world, identity);
        world
            .save()
            .map_err(|e| crate::SimError::unavailable(action, e))?;
        Ok(creds)
    }

    /// The volume attached as `name`: the embedded cloud's instances see their devices by the
    /// names they were attached as, so the volume id is not needed.
    fn device(&self, name: &str, _volume: Option<&VolumeId>) -> io::Result<Arc<dyn Device>> {
        let world = self.sim.inner.read().map_err(io::Error::other)?;
        let m = &self.machine;
        let now = crate::clock::now();
        // A device appears once its attachment is complete, as on an instance.
        let found = world
            .accounts
            .get(&m.account)
            .and_then(|a| a.regions.get(&m.region))
            .and_then(|r| {
                r.volumes.iter().find(|(_, v)| {
                    v.attachment
                        .as_ref()
                        .is_some_and(|(i, d)| i == &m.id && d == name)
                        && crate::clock::attachment_state(v, now) == Some("attached")
                })
            })
            .map(|(id, v)| (id.clone(), u64::from(v.size_gib) << 30));
        drop(world);
        let (volume, size) = found.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no volume attached as {name}"))
        })?;
        Ok(Arc::new(VolumeDevice {
            inner: self.sim.inner.clone(),
            machine: self.machine.clone(),
            volume,
            size,
        }))
    }

    fn cloud(&self) -> Cloud {
        self.sim.cloud()
    }

    fn running(&self) -> bool {
        self.machine.alive()
    }
}

/// Boots the program of a new instance on its own thread.
pub(crate) fn boot(sim: &Sim, machine: Arc<Machine>, user_data: String) {
    let Some(program) = lock(&sim.inner.boot).clone() else {
        machine.set_finished();
        return;
    };
    lock(&sim.inner.machines).insert(machine.id.clone(), machine.clone());
    let host = Arc::new(Host {
        sim: sim.clone(),
        machine: machine.clone(),
    });
    std::thread::spawn(move || {
        program(host, user_data);
        machine.set_finished();
    });
}
