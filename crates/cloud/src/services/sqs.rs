use std::time::Duration;

use bulwark_model::Region;

use crate::{Credentials, Message, Result};

/// SQS: the queues over which the appliance and its workers talk.
pub trait Sqs: Send + Sync {
    /// `sqs:CreateQueue`: a queue encrypted at rest with SQS-managed keys
    /// (`SqsManagedSseEnabled`) that keeps a message `retention` at most
    /// (`MessageRetentionPeriod`: 60 s to 14 days, AWS's bounds); returns its URL.
    fn create_queue(
        &self,
        who: &Credentials,
        region: &Region,
        name: &str,
        retention: Duration,
    ) -> Result<String>;
    /// `sqs:GetQueueUrl`: the URL of the caller's queue `name`, `None` if there is none.
    fn queue_url(&self, who: &Credentials, region: &Region, name: &str) -> Result<Option<String>>;
    /// `sqs:SetQueueAttributes` with the queue's access policy.
    fn set_queue_policy(&self, who: &Credentials, region: &Region, queue: &str, policy: &str) -> Result<()>;
    /// `sqs:DeleteQueue`.
    fn delete_queue(&self, who: &Credentials, region: &Region, queue: &str) -> Result<()>;
    /// `sqs:SendMessage`.
    fn send_message(&self, who: &Credentials, region: &Region, queue: &str, body: &str) -> Result<()>;
    /// `sqs:ReceiveMessage`, waiting up to `wait` for at least one message.
    fn receive_messages(
        &self,
        who: &Credentials,
        region: &Region,
        queue: &str,
        wait: Duration,
    ) -> Result<Vec<Message>>;
    /// `sqs:DeleteMessage`.
    fn delete_message(&self, who: &Credentials, region: &Region, queue: &str, receipt: &str) -> Result<()>;
}
