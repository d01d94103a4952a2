# The pipeline split over machines, as in production, on the cluster `scripts/stack up
# --cluster` runs on one machine: three nodes, each a Kafka broker and KRaft controller (static
# quorum of three; internal topics with three replicas, two needed for a write) and a Cassandra
# node (one data centre, all three seeds, started one after another); two loaders (`--only
# load`) sharing one consumer group, and an ingest node (`--only ingest --once`, started by the
# test) with the stand-in API. The pipeline is replicated as `scripts/stack env --cluster`
# says: topics on three brokers with `min.insync.replicas` 2, the keyspace on three nodes,
# rows written at `local_quorum`. Checks that every record lands exactly once, also while one
# loader is stopped and its partitions move to the other, and while one broker and one
# Cassandra node are down.
#
# The spec is pipelines/users.toml given as `settings` (rendered to TOML by the module), with
# the schema as an absolute store path. nixpkgs has no Cassandra 5.0; this runs on
# `pkgs.cassandra` (4.1.x), as single-node.nix explains.
#
# Run: nix build .#checks.x86_64-linux.vm-cluster -L (needs KVM).
{ aqueduct, module }:
{ lib, nodes, ... }:
let
  clusterNodes = [
    "node1"
    "node2"
    "node3"
  ];
  ipOf = name: nodes.${name}.networking.primaryIPAddress;

  users = lib.recursiveUpdate (builtins.fromTOML (builtins.readFile ../pipelines/users.toml)) {
    validate.schema_file = "${../pipelines/schemas/randomuser-user.json}";
    kafka = {
      bootstrap_servers = lib.concatMapStringsSep "," (n: "${n}:9092") clusterNodes;
      replication_factor = 3;
      topic_properties."min.insync.replicas" = "2";
    };
    cassandra = {
      contact_points = map (n: "${n}:9042") clusterNodes;
      replication = {
        class = "SimpleStrategy";
        replication_factor = 3;
      };
      consistency = "local_quorum";
    };
  };

  # One batch of 50 users per run; each seed gives other users.
  ingestOnce = seed: {
    settings = lib.recursiveUpdate users {
      source.url = "http://127.0.0.1:8080/api/?seed=${seed}";
    };
    extraArgs = [
      "--only"
      "ingest"
      "--once"
    ];
  };

  loader = {
    imports = [ module ];
    services.aqueduct = {
      package = aqueduct;
      pipelines.users = {
        settings = users;
        extraArgs = [
          "--only"
          "load"
        ];
      };
    };
  };

  # Cluster node `n` (1 to 3): Kafka node `n` of the quorum and a Cassandra node; the first
  # starts Cassandra at boot, the test starts the others' one after another.
  clusterNode =
    n:
    { config, ... }:
    let
      name = "node${toString n}";
      ip = config.networking.primaryIPAddress;
    in
    {
      imports = [
        (import ./kafka.nix {
          host = name;
          bind = "";
          nodeId = n;
          voters = lib.imap1 (i: other: "${toString i}@${other}:9093") clusterNodes;
        })
      ];
      virtualisation = {
        memorySize = 3072;
        diskSize = 4096;
      };
      networking.firewall.allowedTCPPorts = [
        9092
        9093
        9042
        7000
      ];
      services.cassandra = {
        enable = true;
        clusterName = "aqueduct-local";
        listenAddress = ip;
        rpcAddress = ip;
        seedAddresses = map ipOf clusterNodes;
        maxHeapSize = "512M";
        heapNewSize = "128M";
        fullRepairInterval = null;
        incrementalRepairInterval = null;
      };
      systemd.services.cassandra.wantedBy = lib.mkIf (n > 1) (lib.mkForce [ ]);
      environment.systemPackages = [
        config.services.apache-kafka.package
        config.services.cassandra.package
      ];
    };
in
{
  name = "aqueduct-cluster";

  nodes = {
    node1 = clusterNode 1;
    node2 = clusterNode 2;
    node3 = clusterNode 3;

    ingest = {
      imports = [ module ];
      services.aqueduct = {
        package = aqueduct;
        pipelines = {
          users-a = ingestOnce "cluster-a";
          users-b = ingestOnce "cluster-b";
          users-c = ingestOnce "cluster-c";
        };
      };
      systemd.services = {
        randomuser-standin = {
          description = "randomuser.me stand-in API";
          wantedBy = [ "multi-user.target" ];
          serviceConfig = {
            ExecStart = "${aqueduct}/bin/randomuser-standin 127.0.0.1:8080";
            DynamicUser = true;
          };
        };
        # The test starts each batch.
        aqueduct-users-a.wantedBy = lib.mkForce [ ];
        aqueduct-users-b.wantedBy = lib.mkForce [ ];
        aqueduct-users-c.wantedBy = lib.mkForce [ ];
      };
    };

    loader1 = loader;
    loader2 = loader;
  };

  testScript = builtins.readFile ./helpers.py + ''

    KAFKA = "--bootstrap-server node1:9092,node2:9092"
    GROUP = "aqueduct-users"
    CQLSH = "cqlsh ${ipOf "node1"}"
    TABLE = "spark_streams.created_users"


    def row_count() -> int | None:
        # The count cqlsh prints under its dashes; None while the table does not exist.
        status, out = node1.execute(f"{CQLSH} -e 'CONSISTENCY QUORUM; SELECT count(*) FROM {TABLE}'")
        if status != 0:
            return None
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        dashes = next(i for i, line in enumerate(lines) if set(line) == {"-"})
        return int(lines[dashes + 1])


    def produced(topic: str) -> int:
        # Messages in the topic, over all partitions.
        out = node1.succeed(f"kafka-get-offsets.sh {KAFKA} --topic {topic}")
        return sum(int(line.rsplit(":", 1)[1]) for line in out.splitlines() if line.startswith(f"{topic}:"))


    def members_with_partitions() -> int:
        status, out = node1.execute(f"kafka-consumer-groups.sh {KAFKA} --describe --group {GROUP} --members")
        if status != 0:
            return 0
        return sum(1 for row in kafka_table(out) if row.get("#PARTITIONS", "0") != "0")


    def drained() -> bool:
        # Every message of users_created committed by the group: lag 0 on all 3 partitions.
        status, out = node1.execute(f"kafka-consumer-groups.sh {KAFKA} --describe --group {GROUP}")
        mine = [row for row in kafka_table(out) if row.get("TOPIC") == "users_created"]
        return status == 0 and len(mine) == 3 and all(row["LAG"] == "0" for row in mine)


    def lands(batch: str, rows: int, messages: int, loaders: int) -> None:
        # Runs one ingest batch and waits until every record is loaded, each exactly once:
        # the topic holds `messages` (none produced twice), the group committed them all,
        # and the table holds `rows` (none lost; upserts by key write none twice).
        ingest.succeed(f"systemctl start --wait aqueduct-{batch}.service")
        assert produced("users_created") == messages, produced("users_created")

        def all_loaded() -> bool:
            return drained() and row_count() == rows

        eventually(all_loaded)
        assert members_with_partitions() == loaders, members_with_partitions()
        assert produced("users_created_dlq") == 0


    start_all()

    with subtest("three brokers and three Cassandra nodes, started one after another"):
        for node in [node1, node2, node3]:
            node.wait_for_unit("apache-kafka.service")
            node.wait_for_open_port(9092, timeout=600)
        node1.wait_until_succeeds(
            f"kafka-metadata-quorum.sh {KAFKA} describe --status | grep -i 'CurrentVoters:[[:blank:]]*\\[1,2,3\\]'",
            timeout=300,
        )
        node1.wait_for_unit("cassandra.service")
        node1.wait_until_succeeds(f"{CQLSH} -e 'DESCRIBE KEYSPACES'", timeout=600)
        for node in [node2, node3]:
            node.succeed("systemctl start cassandra.service")
            node.wait_until_succeeds(f"cqlsh {node.name} -e 'DESCRIBE KEYSPACES'", timeout=600)
        node1.wait_until_succeeds("nodetool status | grep -c '^UN' | grep -qx 3", timeout=300)
        ingest.wait_for_open_port(8080, "127.0.0.1")

    with subtest("both loaders join one consumer group"):
        for loader in [loader1, loader2]:
            loader.wait_for_unit("aqueduct-users.service", timeout=600)
        node1.wait_until_succeeds(
            f"kafka-consumer-groups.sh {KAFKA} --describe --group {GROUP} --members"
            " | grep -c '^aqueduct-users ' | grep -qx 2",
            timeout=300,
        )

    with subtest("a batch lands once, replicated three times, its partitions shared by both loaders"):
        lands("users-a", rows=50, messages=50, loaders=2)
        topic = node1.succeed(f"kafka-topics.sh {KAFKA} --describe --topic users_created")
        assert "ReplicationFactor: 3" in topic and "min.insync.replicas=2" in topic, topic
        keyspace = node1.succeed(f"{CQLSH} -e 'DESCRIBE KEYSPACE spark_streams'")
        assert "'replication_factor': '3'" in keyspace, keyspace

    with subtest("with one loader stopped, the other takes every partition and loses nothing"):
        loader2.succeed("systemctl stop aqueduct-users.service")

        def one_loader_left() -> bool:
            return members_with_partitions() == 1

        eventually(one_loader_left)
        lands("users-b", rows=100, messages=100, loaders=1)

    with subtest("a broker and a Cassandra node down: two of three replicas take every write"):
        node3.succeed("systemctl stop apache-kafka.service cassandra.service")
        lands("users-c", rows=150, messages=150, loaders=1)
        node3.succeed("systemctl start apache-kafka.service cassandra.service")
        node3.wait_until_succeeds(f"cqlsh {node3.name} -e 'DESCRIBE KEYSPACES'", timeout=600)

    with subtest("the loader back, a repeated batch rewrites rows and adds none"):
        loader2.succeed("systemctl start aqueduct-users.service")

        def both_loaders() -> bool:
            return members_with_partitions() == 2

        eventually(both_loaders)
        lands("users-a", rows=150, messages=200, loaders=2)
  '';
}
