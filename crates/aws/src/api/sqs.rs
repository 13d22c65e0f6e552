//! SQS through the SDK.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Sqs for AwsCloud {
    fn create_queue(
        &self,
        who: &Credentials,
        region: &Region,
        name: &str,
        retention: Duration,
    ) -> Result<String> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let a = Action::SqsCreateQueue;
        let c = self.clients(who, Some(region));
        let seconds = retention.as_secs().clamp(60, 14 * 24 * 3600);
        self.run(async {
            let out = c
                .sqs
                .create_queue()
                .queue_name(name)
                .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
                .attributes(QueueAttributeName::MessageRetentionPeriod, seconds.to_string())
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out.queue_url().ok_or_else(|| missing(a, "QueueUrl"))?.to_owned())
        })
    }

    fn queue_url(&self, who: &Credentials, region: &Region, name: &str) -> Result<Option<String>> {
        let a = Action::SqsGetQueueUrl;
        let c = self.clients(who, Some(region));
        self.run(async {
            match c.sqs.get_queue_url().queue_name(name).send().await {
                Ok(out) => Ok(out.queue_url().map(str::to_owned)),
                Err(e) => {
                    let e = map(a, e);
                    if e.kind == bulwark_cloud::ErrorKind::NotFound {
                        Ok(None)
                    } else {
                        Err(e)
                    }
                }
            }
        })
    }

    fn set_queue_policy(&self, who: &Credentials, region: &Region, queue: &str, policy: &str) -> Result<()> {
        let a = Action::SqsSetQueueAttributes;
        let c = self.clients(who, Some(region));
        self.run(async {
            c.sqs
                .set_queue_attributes()
                .queue_url(queue)
                .attributes(aws_sdk_sqs::types::QueueAttributeName::Policy, policy)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn delete_queue(&self, who: &Credentials, region: &Region, queue: &str) -> Result<()> {
        let a = Action::SqsDeleteQueue;
        let c = self.clients(who, Some(region));
        self.run(async {
            c.sqs
                .delete_queue()
                .queue_url(queue)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }

    fn send_message(&self, who: &Credentials, region: &Region, queue: &str, body: &str) -> Result<()> {
        let a = Action::SqsSendMessage;
        let c = self.clients(who, Some(region));
        self.run(async {
            c.sqs
                .send_message()
                .queue_url(queue)
                .message_body(body)
                .send()
                .await
                .map_err(|e| map(a, e))?;
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
        let a = Action::SqsReceiveMessage;
        let c = self.clients(who, Some(region));
        // A long poll waits whole seconds, at most 20.
        let seconds = i32::try_from(wait.as_secs().min(20)).unwrap_or(20);
        self.run(async {
            let out = c
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .wait_time_seconds(seconds)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(out
                .messages()
                .iter()
                .map(|m| Message {
                    receipt: m.receipt_handle().unwrap_or("").to_owned(),
                    body: m.body().unwrap_or("").to_owned(),
                })
                .collect())
        })
    }

    fn delete_message(&self, who: &Credentials, region: &Region, queue: &str, receipt: &str) -> Result<()> {
        let a = Action::SqsDeleteMessage;
        let c = self.clients(who, Some(region));
        self.run(async {
            c.sqs
                .delete_message()
                .queue_url(queue)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| map(a, e))?;
            Ok(())
        })
    }
}
