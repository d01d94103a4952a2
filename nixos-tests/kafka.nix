# One Kafka node as broker and KRaft controller, storage formatted on first start (the
# settings of nixpkgs' nixos/tests/kafka/base.nix), shared by the VM tests.
# `host`: the address clients and the controller quorum use; `bind`: the listeners' address
# ("" for every interface).
{
  host,
  bind ? host,
}:
{
  services.apache-kafka = {
    enable = true;
    clusterId = "ak2fIHr4S8WWarOF_ODD0g"; # any `kafka-storage.sh random-uuid`
    formatLogDirs = true;
    jvmOptions = [
      "-Xms512m"
      "-Xmx512m"
    ];
    settings = {
      "node.id" = 1;
      "process.roles" = [
        "broker"
        "controller"
      ];
      listeners = [
        "PLAINTEXT://${bind}:9092"
        "CONTROLLER://${bind}:9093"
      ];
      "advertised.listeners" = [ "PLAINTEXT://${host}:9092" ];
      "listener.security.protocol.map" = [
        "PLAINTEXT:PLAINTEXT"
        "CONTROLLER:PLAINTEXT"
      ];
      "controller.quorum.voters" = [ "1@${host}:9093" ];
      "controller.listener.names" = [ "CONTROLLER" ];
      "log.dirs" = [ "/var/lib/apache-kafka" ];
      # aqueduct creates its topics (3 partitions); one broker holds one replica.
      "auto.create.topics.enable" = false;
      "offsets.topic.replication.factor" = 1;
      "transaction.state.log.replication.factor" = 1;
      "transaction.state.log.min.isr" = 1;
      "share.coordinator.state.topic.replication.factor" = 1;
      "share.coordinator.state.topic.min.isr" = 1;
      "group.initial.rebalance.delay.ms" = 0;
    };
  };
}
