//! SQS: the session queues and their policies.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Sqs for Sim {
    fn create_queue(
        &self,
        who: &Credentials,
        region: &Region,
        name: &str,
        retention: Duration,
    ) -> Result<String> {
        self.call(Action::SqsCreateQueue, who, |c, w| {
            let account = c.account().clone();
            if name.is_empty()
                || name.len() > 80
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err(CloudError::invalid(
                    c.action,
                    "InvalidParameterValue",
                    format!("queue name '{name}': 1 to 80 letters, digits, - and _"),
                ));
            }
            let seconds = retention.as_secs();
            if !(60..=14 * 24 * 3600).contains(&seconds) {
                return Err(CloudError::invalid(
                    c.action,
                    "InvalidAttributeValue",
                    format!("MessageRetentionPeriod {seconds}: 60 to 1209600 seconds"),
                ));
            }
            c.check(w, c.action, &queue_arn(region, &account, name), &[], None)?;
            let q = region_mut(w, &account, region)
                .queues
                .entry(name.to_owned())
                .or_default();
            q.encrypted = true;
            q.retention_seconds = seconds;
            let url = queue_url(region, &account, name);
            let mut tap = lock(&self.inner.wiretap);
            if tap.on {
                tap.created.push((url.clone(), true, seconds));
            }
            drop(tap);
            Ok(url)
        })
    }

    fn queue_url(&self, who: &Credentials, region: &Region, name: &str) -> Result<Option<String>> {
        self.call(Action::SqsGetQueueUrl, who, |c, w| {
            let account = c.account().clone();
            c.check(w, c.action, &queue_arn(region, &account, name), &[], None)?;
            let exists = region_of(w, &account, region).is_some_and(|r| r.queues.contains_key(name));
            Ok(exists.then(|| queue_url(region, &account, name)))
        })
    }

    fn set_queue_policy(&self, who: &Credentials, region: &Region, queue: &str, policy: &str) -> Result<()> {
        self.call(Action::SqsSetQueueAttributes, who, |c, w| {
            let (account, r, name) = check_queue(w, c, queue)?;
            if &r != region {
                return Err(no_queue(c.action, queue));
            }
            bulwark_cloud::policy::Policy::parse(policy)
                .map_err(|e| CloudError::invalid(c.action, "InvalidAttributeValue", e.to_string()))?;
            if let Some(q) = region_mut(w, &account, region).queues.get_mut(&name) {
                q.policy = Some(policy.to_owned());
            }
            Ok(())
        })
    }

    fn delete_queue(&self, who: &Credentials, region: &Region, queue: &str) -> Result<()> {
        self.call(Action::SqsDeleteQueue, who, |c, w| {
            let (account, _, name) = check_queue(w, c, queue)?;
            region_mut(w, &account, region).queues.remove(&name);
            lock(&self.inner.queues).remove(queue);
            Ok(())
        })
    }

    fn send_message(&self, who: &Credentials, region: &Region, queue: &str, body: &str) -> Result<()> {
        self.call(Action::SqsSendMessage, who, |c, w| {
            let (account, r, name) = check_queue(w, c, queue)?;
            if &r != region {
                return Err(no_queue(c.action, queue));
            }
            let retention = region_of(w, &account, region)
                .and_then(|r| r.queues.get(&name))
                .map_or(0, |q| q.retention_seconds);
            // SQS's default retention: 4 days.
            let expires =
                Instant::now() + Duration::from_secs(if retention == 0 { 4 * 86_400 } else { retention });
            if body.len() > 256 * 1024 {
                return Err(CloudError::invalid(
                    c.action,
                    "InvalidParameterValue",
                    "a message is at most 256 KiB",
                ));
            }
            let planted = {
                let mut tap = lock(&self.inner.wiretap);
                if tap.on {
                    tap.sent.push((queue.to_owned(), body.to_owned()));
                }
                std::mem::take(&mut tap.planted)
            };
            let mut queues = lock(&self.inner.queues);
            let messages = queues.entry(queue.to_owned()).or_default();
            for body in planted.into_iter().chain([body.to_owned()]) {
                w.next_id += 1;
                messages.push_back((w.next_id, body, expires));
            }
            drop(queues);
            self.inner.queue_signal.notify_all();
            Ok(())
        })
    }

    fn receive_messages(
        &self,
        who: &Credentials,
        region: &Region,
        queue: &str,
        wait: Duration,
    ) -> Result<Vec<Message>> {
        self.call(Action::SqsReceiveMessage, who, |c, w| {
            let (_, r, _) = check_queue(w, c, queue)?;
            if &r != region {
                return Err(no_queue(c.action, queue));
            }
            Ok(())
        })?;
        let deadline = Instant::now() + wait;
        let mut queues = lock(&self.inner.queues);
        loop {
            if let Some(q) = queues.get_mut(queue) {
                // What the queue's retention period has passed is gone.
                let now = Instant::now();
                q.retain(|(_, _, expires)| *expires > now);
                if !q.is_empty() {
                    // Received messages are handed out once: a session's queue has one reader.
                    return Ok(q
                        .drain(..q.len().min(10))
                        .map(|(id, body, _)| Message {
                            receipt: id.to_string(),
                            body,
                        })
                        .collect());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            queues = self
                .inner
                .queue_signal
                .wait_timeout(queues, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    fn delete_message(&self, who: &Credentials, region: &Region, queue: &str, receipt: &str) -> Result<()> {
        self.call(Action::SqsDeleteMessage, who, |c, w| {
            let (_, r, _) = check_queue(w, c, queue)?;
            if &r != region || receipt.is_empty() {
                return Err(CloudError::invalid(
                    c.action,
                    "ReceiptHandleIsInvalid",
                    format!("receipt '{receipt}' is invalid"),
                ));
            }
            Ok(())
        })
    }
}
