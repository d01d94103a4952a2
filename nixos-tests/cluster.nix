# The pipeline split over machines, as in production: Kafka and Cassandra on their own VMs,
# two loaders (`--only load`) sharing one consumer group, and an ingest node (`--only ingest
# --once`, started by the test) with the stand-in API. Checks that every record lands exactly
# once, also while one loader is stopped and its partitions move to the other.
#
# The spec is pipelines/users.toml given as `settings` (rendered to TOML by the module), with
# the schema as an absolute store path. nixpkgs has no Cassandra 5.0; this runs on
# `pkgs.cassandra` (4.1.x), as single-node.nix explains.
#
# Run: nix build .#checks.x86_64-linux.vm-cluster -L (needs KVM).
{ aqueduct, module }:
{ lib, nodes, ... }:
let
  users = lib.recursiveUpdate (builtins.fromTOML (builtins.readFile ../pipelines/users.toml)) {
    validate.schema_file = "${../pipelines/schemas/randomuser-user.json}";
    kafka.bootstrap_servers = "kafka:9092";
    cassandra.contact_points = [ "cassandra:9042" ];
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
in
{
  name = "aqueduct-cluster";

  nodes = {
    kafka =
      { config, ... }:
      {
        imports = [
          (import ./kafka.nix {
            host = "kafka";
            bind = "";
          })
        ];
        virtualisation = {
          memorySize = 2048;
          diskSize = 2048;
        };
        networking.firewall.allowedTCPPorts = [ 9092 ];
        environment.systemPackages = [ config.services.apache-kafka.package ];
      };

    cassandra =
      { config, ... }:
      let
        ip = config.networking.primaryIPAddress;
      in
      {
        virtualisation = {
          memorySize = 2048;
          diskSize = 2048;
        };
        networking.firewall.allowedTCPPorts = [ 9042 ];
        services.cassandra = {
          enable = true;
          listenAddress = ip;
          rpcAddress = ip;
          seedAddresses = [ ip ];
          maxHeapSize = "512M";
          heapNewSize = "128M";
          fullRepairInterval = null;
          incrementalRepairInterval = null;
        };
        environment.systemPackages = [ config.services.cassandra.package ];
      };

    ingest = {
      imports = [ module ];
      services.aqueduct = {
        package = aqueduct;
        pipelines = {
          users-a = ingestOnce "cluster-a";
          users-b = ingestOnce "cluster-b";
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
      };
    };

    loader1 = loader;
    loader2 = loader;
  };

  testScript = builtins.readFile ./helpers.py + ''

    KAFKA = "--bootstrap-server kafka:9092"
    GROUP = "aqueduct-users"
    CQLSH = "cqlsh ${nodes.cassandra.networking.primaryIPAddress}"
    TABLE = "spark_streams.created_users"


    def row_count() -> int | None:
        # The count cqlsh prints under its dashes; None while the table does not exist.
        status, out = cassandra.execute(f"{CQLSH} -e 'SELECT count(*) FROM {TABLE}'")
        if status != 0:
            return None
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        dashes = next(i for i, line in enumerate(lines) if set(line) == {"-"})
        return int(lines[dashes + 1])


    def produced(topic: str) -> int:
        # Messages in the topic, over all partitions.
        out = kafka.succeed(f"kafka-get-offsets.sh {KAFKA} --topic {topic}")
        return sum(int(line.rsplit(":", 1)[1]) for line in out.splitlines() if line.startswith(f"{topic}:"))


    def members_with_partitions() -> int:
        status, out = kafka.execute(f"kafka-consumer-groups.sh {KAFKA} --describe --group {GROUP} --members")
        if status != 0:
            return 0
        return sum(1 for row in kafka_table(out) if row.get("#PARTITIONS", "0") != "0")


    def drained() -> bool:
        # Every message of users_created committed by the group: lag 0 on all 3 partitions.
        status, out = kafka.execute(f"kafka-consumer-groups.sh {KAFKA} --describe --group {GROUP}")
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

    with subtest("Kafka and Cassandra serve the other machines"):
        kafka.wait_for_unit("apache-kafka.service")
        kafka.wait_for_open_port(9092, timeout=600)
        kafka.wait_until_succeeds(f"kafka-topics.sh {KAFKA} --list", timeout=300)
        cassandra.wait_for_unit("cassandra.service")
        cassandra.wait_until_succeeds(f"{CQLSH} -e 'DESCRIBE KEYSPACES'", timeout=600)
        ingest.wait_for_open_port(8080, "127.0.0.1")

    with subtest("both loaders join one consumer group"):
        for loader in [loader1, loader2]:
            loader.wait_for_unit("aqueduct-users.service", timeout=600)
        kafka.wait_until_succeeds(
            f"kafka-consumer-groups.sh {KAFKA} --describe --group {GROUP} --members"
            " | grep -c '^aqueduct-users ' | grep -qx 2",
            timeout=300,
        )

    with subtest("a batch lands once, its partitions shared by both loaders"):
        lands("users-a", rows=50, messages=50, loaders=2)

    with subtest("with one loader stopped, the other takes every partition and loses nothing"):
        loader2.succeed("systemctl stop aqueduct-users.service")

        def one_loader_left() -> bool:
            return members_with_partitions() == 1

        eventually(one_loader_left)
        lands("users-b", rows=100, messages=100, loaders=1)

    with subtest("the loader back, a repeated batch rewrites rows and adds none"):
        loader2.succeed("systemctl start aqueduct-users.service")

        def both_loaders() -> bool:
            return members_with_partitions() == 2

        eventually(both_loaders)
        lands("users-a", rows=100, messages=150, loaders=2)
  '';
}
