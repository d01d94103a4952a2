# One VM with the whole pipeline, the NixOS way: Kafka (KRaft) and Cassandra from nixpkgs, the
# randomuser stand-in API, and services.aqueduct running pipelines/users.toml (the copy the
# package installs) against them. Checks that every valid user lands once, that the invalid
# ones reach the dead-letter topic, and that restarting aqueduct mid-stream (gracefully and
# with SIGKILL) loses no row and doubles none.
#
# nixpkgs has no Cassandra 5.0 (`pkgs.cassandra` is `cassandra_4`, 4.1.x: see
# pkgs/top-level/all-packages.nix and pkgs/servers/nosql/cassandra/), so this test runs on
# the newest Cassandra nixpkgs has; docker-compose.yml and scripts/stack use 5.0.
#
# Run: nix build .#checks.x86_64-linux.vm-single-node -L (needs KVM).
{ aqueduct, module }:
{
  name = "aqueduct-single-node";

  nodes.machine =
    { config, pkgs, ... }:
    {
      imports = [
        module
        (import ./kafka.nix { host = "127.0.0.1"; })
      ];

      virtualisation = {
        memorySize = 4096;
        cores = 2;
        diskSize = 4096;
      };

      services = {
        cassandra = {
          enable = true;
          maxHeapSize = "512M";
          heapNewSize = "128M";
          fullRepairInterval = null;
          incrementalRepairInterval = null;
        };

        aqueduct = {
          package = aqueduct;
          pipelines.users = {
            specFile = "${aqueduct}/share/aqueduct/pipelines/users.toml";
            environment = {
              # A fixed seed: every poll returns the same 50 users, the first 2 broken.
              AQUEDUCT_SOURCE__URL = "http://127.0.0.1:8080/api/?seed=nixos&invalid=2";
              AQUEDUCT_SOURCE__SCHEDULE__EVERY = "5s";
            };
          };
        };
      };

      systemd.services.randomuser-standin = {
        description = "randomuser.me stand-in API";
        wantedBy = [ "multi-user.target" ];
        serviceConfig = {
          ExecStart = "${aqueduct}/bin/randomuser-standin 127.0.0.1:8080";
          DynamicUser = true;
        };
      };

      environment.systemPackages = [
        config.services.apache-kafka.package
        config.services.cassandra.package
        pkgs.curl
      ];
    };

  testScript = builtins.readFile ./helpers.py + ''
    import json
    import re

    USERS = 48  # the stand-in sends 50 users a poll; invalid=2 breaks the first 2
    KAFKA = "--bootstrap-server 127.0.0.1:9092"
    UNIT = "aqueduct-users.service"
    TABLE = "spark_streams.created_users"
    UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


    def row_count() -> int | None:
        # The count cqlsh prints under its dashes; None while the table does not exist.
        status, out = machine.execute(f"cqlsh 127.0.0.1 -e 'SELECT count(*) FROM {TABLE}'")
        if status != 0:
            return None
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        dashes = next(i for i, line in enumerate(lines) if set(line) == {"-"})
        return int(lines[dashes + 1])


    def produced() -> int:
        # Messages produced to users_created, over all partitions.
        out = machine.succeed(f"kafka-get-offsets.sh {KAFKA} --topic users_created")
        return sum(int(line.rsplit(":", 1)[1]) for line in out.splitlines() if line.startswith("users_created:"))


    def drained() -> bool:
        # Every message of users_created committed by the loaders' group (lag 0 on 3 partitions).
        status, out = machine.execute(f"kafka-consumer-groups.sh {KAFKA} --describe --group aqueduct-users")
        mine = [row for row in kafka_table(out) if row.get("TOPIC") == "users_created"]
        return status == 0 and len(mine) == 3 and all(row["LAG"] == "0" for row in mine)


    def all_users_stored() -> bool:
        return row_count() == USERS


    def wait_for_a_poll() -> None:
        before = produced()

        def polled() -> bool:
            return produced() > before

        eventually(polled, timeout=120)


    def restarts() -> int:
        return int(machine.succeed(f"systemctl show -p NRestarts --value {UNIT}").strip())


    start_all()

    with subtest("Kafka, Cassandra and the stand-in serve"):
        machine.wait_for_unit("apache-kafka.service")
        machine.wait_for_open_port(9092, "127.0.0.1", timeout=600)
        machine.wait_until_succeeds(f"kafka-topics.sh {KAFKA} --list", timeout=300)
        machine.wait_for_unit("cassandra.service")
        machine.wait_for_open_port(9042, "127.0.0.1", timeout=600)
        machine.wait_until_succeeds("cqlsh 127.0.0.1 -e 'DESCRIBE KEYSPACES'", timeout=600)
        machine.wait_for_open_port(8080, "127.0.0.1")

    with subtest("every valid user lands, once"):
        # The unit started at boot and restarts every 5 s until both servers answer.
        machine.wait_for_unit(UNIT, timeout=600)
        eventually(all_users_stored, timeout=600)
        eventually(drained)

    with subtest("invalid users are dead-lettered with their reasons"):
        out = machine.succeed(
            f"kafka-console-consumer.sh {KAFKA} --topic users_created_dlq --from-beginning"
            " --max-messages 2 --timeout-ms 60000"
        )
        letters = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert len(letters) == 2, out
        for letter in letters:
            assert letter["pipeline"] == "users", letter
            assert letter["stage"] == "validate", letter
            assert "invalid=2" in letter["origin"]["url"], letter

    with subtest("restarts mid-stream lose no row and double none"):
        # A graceful stop (SIGTERM) and start, then two crashes that systemd restarts,
        # each right after a poll produced new messages.
        wait_for_a_poll()
        machine.succeed(f"systemctl restart {UNIT}")
        for _ in range(2):
            wait_for_a_poll()
            before = restarts()
            machine.succeed(f"systemctl kill --signal=SIGKILL {UNIT}")
            machine.wait_until_succeeds(f"test $(systemctl show -p NRestarts --value {UNIT}) -gt {before}")
            machine.wait_for_unit(UNIT)
        wait_for_a_poll()
        eventually(drained)

        api = json.loads(machine.succeed("curl -sf 'http://127.0.0.1:8080/api/?seed=nixos&invalid=2&results=50'"))
        expected = {user["login"]["uuid"] for user in api["results"] if "login" in user}
        stored = UUID.findall(machine.succeed(f"cqlsh 127.0.0.1 -e 'SELECT id FROM {TABLE}'"))
        assert len(expected) == USERS, expected
        assert len(stored) == USERS, stored
        assert set(stored) == expected, (sorted(stored), sorted(expected))
        assert row_count() == USERS
  '';
}
