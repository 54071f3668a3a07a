// Find, and on request abort, transactions left hanging in __consumer_offsets: what
// `kafka-transactions.sh find-hanging` / `abort` do, through Kafka's Admin API (which
// confluent-kafka does not have). The fault harness runs it with the dev broker's jars:
//
//   java -cp "KAFKA_LIBS/*" HangingTransactions.java BOOTSTRAP find|abort
//
// A transaction hangs on a partition when the partition holds an open transaction of a
// producer (DescribeProducers: a current transaction start offset) that its coordinator
// no longer has open on that partition (DescribeTransactions). One JSON object per
// hanging transaction on stdout: partition, producer id and epoch, coordinator epoch,
// start offset, the coordinator's state for it, the group offsets it holds pending
// (its batch at the start offset, read uncommitted: "topic:partition" -> offset), and
// whether it was aborted.

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.admin.DescribeProducersResult.PartitionProducerState;
import org.apache.kafka.common.TopicPartition;

public class HangingTransactions {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        boolean abort = args.length > 1 && args[1].equals("abort");
        try (Admin admin = Admin.create(props)) {
            int count = admin.describeTopics(List.of("__consumer_offsets")).allTopicNames().get()
                    .get("__consumer_offsets").partitions().size();
            List<TopicPartition> offsets = new ArrayList<>();
            for (int p = 0; p < count; p++) offsets.add(new TopicPartition("__consumer_offsets", p));
            Map<Long, TransactionDescription> open = openTransactions(admin);
            for (Map.Entry<TopicPartition, PartitionProducerState> entry :
                    admin.describeProducers(offsets).all().get().entrySet()) {
                TopicPartition tp = entry.getKey();
                for (ProducerState producer : entry.getValue().activeProducers()) {
                    if (producer.currentTransactionStartOffset().isEmpty()) continue;
                    TransactionDescription txn = open.get(producer.producerId());
                    if (txn != null && isOpen(txn.state()) && txn.topicPartitions().contains(tp)) continue;
                    String pending = pendingOffsets(args[0], tp,
                            producer.currentTransactionStartOffset().getAsLong(),
                            producer.lastSequence() + 1);
                    boolean aborted = false;
                    if (abort) {
                        admin.abortTransaction(new AbortTransactionSpec(tp, producer.producerId(),
                                (short) producer.producerEpoch(),
                                producer.coordinatorEpoch().orElse(-1))).all().get();
                        aborted = true;
                    }
                    System.out.printf(
                        "{\"partition\": \"%s\", \"producer_id\": %d, \"producer_epoch\": %d, "
                        + "\"coordinator_epoch\": %d, \"start_offset\": %d, \"state\": \"%s\", "
                        + "\"pending\": %s, \"aborted\": %b}%n",
                        tp, producer.producerId(), producer.producerEpoch(),
                        producer.coordinatorEpoch().orElse(-1),
                        producer.currentTransactionStartOffset().getAsLong(),
                        txn == null ? "none" : txn.state(), pending, aborted);
                }
            }
        }
    }

    /** The offset commits of the transaction's batch at {@code start} (its first
     *  {@code count} records) as a JSON object: "topic:partition" -> offset. */
    static String pendingOffsets(String bootstrap, TopicPartition tp, long start, int count) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_uncommitted");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG,
                  "org.apache.kafka.common.serialization.ByteArrayDeserializer");
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG,
                  "org.apache.kafka.common.serialization.ByteArrayDeserializer");
        StringJoiner found = new StringJoiner(", ", "{", "}");
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.assign(List.of(tp));
            consumer.seek(tp, start);
            long deadline = System.currentTimeMillis() + 10_000;
            int seen = 0;
            while (seen < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                    if (seen++ >= count) break;
                    ByteBuffer key = ByteBuffer.wrap(record.key());
                    if (key.getShort() > 1 || record.value() == null) continue;  // not an offset commit
                    readString(key);  // the group
                    String topic = readString(key);
                    int partition = key.getInt();
                    ByteBuffer value = ByteBuffer.wrap(record.value());
                    value.getShort();  // the value's version
                    found.add("\"" + topic + ":" + partition + "\": " + value.getLong());
                }
            }
        }
        return found.toString();
    }

    static String readString(ByteBuffer buffer) {
        byte[] bytes = new byte[buffer.getShort()];
        buffer.get(bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }

    /** Every transaction its coordinator knows, by producer id. */
    static Map<Long, TransactionDescription> openTransactions(Admin admin) throws Exception {
        List<String> ids = new ArrayList<>();
        for (TransactionListing listing : admin.listTransactions().all().get())
            ids.add(listing.transactionalId());
        Map<Long, TransactionDescription> byProducer = new HashMap<>();
        if (ids.isEmpty()) return byProducer;
        for (TransactionDescription txn : admin.describeTransactions(ids).all().get().values())
            byProducer.put(txn.producerId(), txn);
        return byProducer;
    }

    static boolean isOpen(TransactionState state) {
        return state == TransactionState.ONGOING || state == TransactionState.PREPARE_COMMIT
            || state == TransactionState.PREPARE_ABORT;
    }
}
