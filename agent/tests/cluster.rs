//! What the cluster design (docs/cluster.md) asks of the broker, checked against a real Tansu:
//! an idempotent, lz4-compressed producer with acks=all is read back whole and in order.
//! (Tansu 0.6 keeps committed offsets but drops their metadata, so the design keeps no state
//! there.)

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::kafka::Broker;

fn consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

#[test]
fn an_idempotent_compressed_stream_is_read_back_whole_and_in_order() {
    let broker = Broker::start("memory");
    broker.create_topic("partials", 2);
    let brokers = broker.addr();

    // An idempotent, compressed producer with acks=all.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let payloads: Vec<String> = (0..50).map(|i| format!("partial {i} {}", "x".repeat(500))).collect();
    for p in &payloads {
        let mut record = BaseRecord::<str, [u8]>::to("partials").key("credit-risk").partition(1).payload(p.as_bytes());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(20));
                    record = r;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("every record acknowledged");

    let reader = consumer(&brokers, "reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("partials", 1, Offset::Beginning).expect("tpl");
    reader.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < payloads.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(got, payloads, "read back whole and in order");
}
