//! The cloud Bulwark's engine talks to: the subset of STS, EC2, the EBS direct APIs, KMS, IAM,
//! SQS and S3 that plans use, one trait per service ([`Sts`], [`Ec2`], [`Ebs`], [`Kms`],
//! [`Iam`], [`Sqs`], [`ObjectStore`]) gathered in [`Cloud`], whose errors carry AWS's codes
//! ([`CloudError`]). Two implementations exist: the embedded cloud (`bulwark-sim`, in process,
//! the default) and AWS itself (`bulwark-aws`, through the AWS SDK for Rust). A plan that runs
//! on one must run on the other, so the traits speak AWS's terms, not Bulwark's.
//!
//! [`Cloud`] holds one handle per service, so a decorator (faults, recording, a test double)
//! replaces the one service it changes and shares the others:
//! `Cloud { ec2: Arc::new(Faulty(cloud.ec2.clone())), ..cloud }`.
//!
//! Also here, because both clouds and the preflight check need it: the IAM policy evaluator
//! ([`policy`]), which decides a request the way AWS documents it (explicit deny, wildcards,
//! `NotAction`, conditions, the cross-account intersection of identity and resource policies).
//!
//! The traits are synchronous: the engine runs workers and transfers on threads, and the AWS
//! implementation blocks on the runtime its host gives it.
//!
//! This crate does no I/O and must not depend on an AWS SDK, on the repository format, on the
//! planner or on the engine.
#![deny(missing_docs)]

pub mod checksum;
mod error;
pub mod policy;
mod services;
mod types;

use std::sync::Arc;

pub use error::{CloudError, ErrorKind, Result};
pub use services::{Ebs, Ec2, Iam, Kms, ObjectStore, Sqs, Sts};
pub use types::*;

/// A cloud: one handle per service. Cheap to clone; clones share the services.
#[derive(Clone)]
pub struct Cloud {
    /// STS: identities and role sessions.
    pub sts: Arc<dyn Sts>,
    /// EC2: instances, volumes, snapshots, images.
    pub ec2: Arc<dyn Ec2>,
    /// The EBS direct APIs: snapshot blocks.
    pub ebs: Arc<dyn Ebs>,
    /// KMS: keys, their policies and grants.
    pub kms: Arc<dyn Kms>,
    /// IAM: roles, their policies, instance profiles.
    pub iam: Arc<dyn Iam>,
    /// SQS: the session queues.
    pub sqs: Arc<dyn Sqs>,
    /// S3, as the repository's object store.
    pub s3: Arc<dyn ObjectStore>,
}

impl Cloud {
    /// A cloud whose every service is `implementation`.
    pub fn of<C>(implementation: Arc<C>) -> Cloud
    where
        C: Sts + Ec2 + Ebs + Kms + Iam + Sqs + ObjectStore + 'static,
    {
        let c = implementation;
        Cloud {
            sts: c.clone(),
            ec2: c.clone(),
            ebs: c.clone(),
            kms: c.clone(),
            iam: c.clone(),
            sqs: c.clone(),
            s3: c,
        }
    }
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cloud")
    }
}
