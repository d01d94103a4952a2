{
  description = "aqueduct: declarative data pipelines (HTTP JSON API -> JSON Schema -> Kafka -> jq -> Cassandra)";

  # The current stable release branch; `nix flake lock` pins its commit in flake.lock.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      linuxSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # Not x86_64-darwin: nixpkgs 26.05 is its last release and warns on every evaluation
      # (release notes, "x86_64-darwin-26.05").
      darwinSystems = [ "aarch64-darwin" ];
      forSystems = systems: f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      cargoToml = builtins.fromTOML (builtins.readFile ./Cargo.toml);
      lockedCrates = (builtins.fromTOML (builtins.readFile ./Cargo.lock)).package;

      # rdkafka-sys "4.10.0+2.12.1" bundles librdkafka 2.12.1. Linked dynamically (our
      # `dynamic-rdkafka` feature) its build.rs asks pkg-config for at least that version and
      # fails otherwise, so nixpkgs' librdkafka is used only when it is new enough; else the
      # bundled copy is built with cmake (rdkafka's `cmake-build` feature, always on).
      rdkafkaSys = builtins.head (builtins.filter (p: p.name == "rdkafka-sys") lockedCrates);
      bundledLibrdkafka = builtins.elemAt (builtins.match "[^+]*[+](.*)" rdkafkaSys.version) 0;
      useSystemRdkafka = pkgs: lib.versionAtLeast pkgs.rdkafka.version bundledLibrdkafka;
      cargoFeatures = pkgs: lib.optional (useSystemRdkafka pkgs) "dynamic-rdkafka";

      aqueductFor =
        pkgs:
        pkgs.rustPlatform.buildRustPackage {
          pname = cargoToml.package.name;
          inherit (cargoToml.package) version;

          src = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.unions [
              ./Cargo.toml
              ./Cargo.lock
              ./src
              ./tests
              ./pipelines
              # Cargo.toml's [[bench]] target must exist for cargo to load the manifest.
              (lib.fileset.maybeMissing ./benches)
            ];
          };
          cargoLock.lockFile = ./Cargo.lock;

          buildFeatures = cargoFeatures pkgs;
          # As nixpkgs builds other rdkafka users (pkgs/by-name/ve/vector/package.nix): the
          # system librdkafka through pkg-config. The bundled fallback needs cmake and the
          # headers librdkafka's CMake build looks for.
          nativeBuildInputs = [ pkgs.pkg-config ] ++ lib.optional (!useSystemRdkafka pkgs) pkgs.cmake;
          buildInputs = [
            pkgs.openssl
            pkgs.zlib
          ]
          ++ (
            if useSystemRdkafka pkgs then
              [ pkgs.rdkafka ]
            else
              [
                pkgs.zstd
                pkgs.curl
              ]
          );

          # Unit and `cli` tests run here. The Kafka/Cassandra integration tests skip without
          # servers (the VM tests cover them): point them at closed ports, so a server on the
          # builder (no sandbox) is never used, and make sure CI=true cannot turn skips into
          # failures.
          env = {
            AQUEDUCT_TEST_KAFKA = "127.0.0.1:1";
            AQUEDUCT_TEST_CASSANDRA = "127.0.0.1:1";
          };
          preCheck = ''
            unset CI
          '';
          # tests/it/docs.rs compares README.md with this file, neither of which is in `src`.
          checkFlags = [ "--skip=docs::" ];
          # The stand-in API tests listen on 127.0.0.1.
          __darwinAllowLocalNetworking = true;

          # The example pipelines, so `specFile = "${aqueduct}/share/aqueduct/pipelines/users.toml"`
          # finds its schema beside it.
          postInstall = ''
            mkdir -p $out/share/aqueduct
            cp -r pipelines $out/share/aqueduct/
          '';

          meta = {
            inherit (cargoToml.package) description;
            license = lib.licenses.asl20;
            mainProgram = "aqueduct";
            platforms = lib.platforms.linux ++ lib.platforms.darwin;
          };
        };

      # `nix run .#stack -- up`: Kafka and Cassandra from nixpkgs on 127.0.0.1.
      stackFor =
        pkgs:
        let
          kafka = pkgs.apacheKafka;
          inherit (pkgs) cassandra;
        in
        pkgs.writeShellApplication {
          name = "aqueduct-stack";
          runtimeInputs = [
            kafka
            cassandra
            pkgs.coreutils
            pkgs.gnugrep
            pkgs.gnused
            pkgs.util-linux
          ];
          text = ''
            # Kafka (KRaft, one broker + controller) and Cassandra (one node) from nixpkgs on 127.0.0.1,
            # for local work and the integration tests: the Nix user's `scripts/stack`. The same ports and
            # AQUEDUCT_* variables as scripts/stack; state (data, config, logs, pids) lives in
            # $AQUEDUCT_STACK_DIR, default .stack-nix in the current directory.

            usage() {
              cat <<USAGE
            Usage: nix run .#stack -- COMMAND

            Commands:
              up              start Kafka and Cassandra (if not running) and wait until both
                              serve clients; exit 1 if one does not within the timeout
              down [--wipe]   stop both; --wipe also deletes their data
              status          show both; exit 0 if both serve clients, 3 if not
              logs [kafka|cassandra|both]
                              last 100 lines of the server logs [both]

            Environment (defaults in brackets):
              AQUEDUCT_STACK_DIR               data, config, logs, pids [.stack-nix]
              AQUEDUCT_KAFKA_PORT              Kafka client port [9092]
              AQUEDUCT_KAFKA_CONTROLLER_PORT   Kafka controller port [9093]
              AQUEDUCT_KAFKA_HEAP              Kafka heap [512m]
              AQUEDUCT_CASSANDRA_PORT          CQL port [9042]
              AQUEDUCT_CASSANDRA_STORAGE_PORT  Cassandra internode port [7000]
              AQUEDUCT_CASSANDRA_JMX_PORT      Cassandra JMX port, loopback only [7199]
              AQUEDUCT_CASSANDRA_HEAP          Cassandra heap [1G]
              AQUEDUCT_STACK_TIMEOUT           seconds \`up\` waits for readiness [240]
            USAGE
            }

            state=''${AQUEDUCT_STACK_DIR:-.stack-nix}
            [[ $state == /* ]] || state=$PWD/$state
            kafka_port=''${AQUEDUCT_KAFKA_PORT:-9092}
            controller_port=''${AQUEDUCT_KAFKA_CONTROLLER_PORT:-9093}
            kafka_heap=''${AQUEDUCT_KAFKA_HEAP:-512m}
            cql_port=''${AQUEDUCT_CASSANDRA_PORT:-9042}
            storage_port=''${AQUEDUCT_CASSANDRA_STORAGE_PORT:-7000}
            jmx_port=''${AQUEDUCT_CASSANDRA_JMX_PORT:-7199}
            cassandra_heap=''${AQUEDUCT_CASSANDRA_HEAP:-1G}
            timeout=''${AQUEDUCT_STACK_TIMEOUT:-240}
            servers=(cassandra kafka) # Cassandra first: it takes longest to start

            say() { printf '%s\n' "$*"; }
            die() {
              printf 'stack: %s\n' "$*" >&2
              exit 1
            }

            main_class() {
              case $1 in
              kafka) say kafka.Kafka ;;
              cassandra) say org.apache.cassandra.service.CassandraDaemon ;;
              esac
            }

            # Prints the pid of server $1 if its pid file names a live process running the server's main
            # class, so a stale pid reused by another process is never taken for it.
            running() {
              local pid args
              pid=$(cat "$state/$1/pid" 2>/dev/null) || return 1
              [[ $pid =~ ^[0-9]+$ ]] || return 1
              args=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
              grep -qxF "$(main_class "$1")" <<<"$args" || return 1
              say "$pid"
            }

            # True if server $1 answers a client request.
            serving() {
              case $1 in
              kafka) kafka-broker-api-versions.sh --bootstrap-server "127.0.0.1:$kafka_port" >/dev/null 2>&1 ;;
              cassandra) cqlsh 127.0.0.1 "$cql_port" -e 'SELECT release_version FROM system.local' >/dev/null 2>&1 ;;
              esac
            }

            start_kafka() {
              local dir=$state/kafka
              mkdir -p "$dir/data" "$dir/tmp"
              cat >"$dir/server.properties" <<PROPERTIES
            process.roles=broker,controller
            node.id=1
            controller.quorum.voters=1@127.0.0.1:$controller_port
            listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$controller_port
            controller.listener.names=CONTROLLER
            inter.broker.listener.name=PLAINTEXT
            listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
            log.dirs=$dir/data
            # aqueduct creates its topics; a typo must fail, not make a topic.
            auto.create.topics.enable=false
            num.partitions=1
            offsets.topic.replication.factor=1
            offsets.topic.num.partitions=1
            transaction.state.log.replication.factor=1
            transaction.state.log.min.isr=1
            share.coordinator.state.topic.replication.factor=1
            share.coordinator.state.topic.min.isr=1
            group.initial.rebalance.delay.ms=0
            PROPERTIES
              cat >"$dir/log4j2.properties" <<LOG4J
            appender.stdout.type = Console
            appender.stdout.name = STDOUT
            appender.stdout.layout.type = PatternLayout
            appender.stdout.layout.pattern = [%d] %p %m (%c)%n
            rootLogger.level = INFO
            rootLogger.appenderRef.stdout.ref = STDOUT
            LOG4J
              if [[ ! -f $dir/data/meta.properties ]]; then
                [[ -s $dir/cluster-id ]] || kafka-storage.sh random-uuid >"$dir/cluster-id"
                kafka-storage.sh format -t "$(<"$dir/cluster-id")" -c "$dir/server.properties" >>"$dir/kafka.log" 2>&1 ||
                  die "formatting the Kafka log dir failed; see $dir/kafka.log"
              fi
              setsid "${kafka.passthru.jre}/bin/java" "-Xms$kafka_heap" "-Xmx$kafka_heap" "-Djava.io.tmpdir=$dir/tmp" \
                "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "${kafka}/libs/*" \
                kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 </dev/null &
              say $! >"$dir/pid"
            }

            start_cassandra() {
              local dir=$state/cassandra
              mkdir -p "$dir/conf" "$dir/data" "$dir/commitlog" "$dir/saved_caches" "$dir/hints" "$dir/cdc_raw" "$dir/logs"
              cp -r "${cassandra}/conf/." "$dir/conf/"
              chmod -R u+w "$dir/conf"
              # The port comes from the environment below (as the NixOS module does it).
              sed -i '/^JMX_PORT=/d' "$dir/conf/cassandra-env.sh"
              cat >"$dir/conf/cassandra.yaml" <<YAML
            cluster_name: aqueduct-local
            num_tokens: 16
            partitioner: org.apache.cassandra.dht.Murmur3Partitioner
            endpoint_snitch: SimpleSnitch
            commitlog_sync: periodic
            commitlog_sync_period_in_ms: 10000
            seed_provider:
              - class_name: org.apache.cassandra.locator.SimpleSeedProvider
                parameters:
                  - seeds: "127.0.0.1:$storage_port"
            listen_address: 127.0.0.1
            rpc_address: 127.0.0.1
            storage_port: $storage_port
            native_transport_port: $cql_port
            start_native_transport: true
            data_file_directories: ["$dir/data"]
            commitlog_directory: "$dir/commitlog"
            saved_caches_directory: "$dir/saved_caches"
            hints_directory: "$dir/hints"
            cdc_raw_directory: "$dir/cdc_raw"
            auto_snapshot: false
            YAML
              CASSANDRA_CONF=$dir/conf CASSANDRA_LOG_DIR=$dir/logs JMX_PORT=$jmx_port LOCAL_JMX=yes \
                MAX_HEAP_SIZE=$cassandra_heap HEAP_NEWSIZE=256M \
                setsid cassandra -f >>"$dir/cassandra.log" 2>&1 </dev/null &
              say $! >"$dir/pid"
            }

            log_tail() {
              say "--- last 40 lines of $state/$1/$1.log ---" >&2
              tail -n 40 "$state/$1/$1.log" >&2 || true
            }

            # Waits until server $1 serves clients; fails if it exits or the timeout runs out.
            wait_ready() {
              local deadline=$((SECONDS + timeout))
              until serving "$1"; do
                if ! running "$1" >/dev/null; then
                  log_tail "$1"
                  die "$1 exited while starting"
                fi
                if ((SECONDS >= deadline)); then
                  log_tail "$1"
                  die "$1 did not serve clients within $timeout s (AQUEDUCT_STACK_TIMEOUT)"
                fi
                sleep 2
              done
              say "$1 serves clients"
            }

            up() {
              local name pid
              for name in "''${servers[@]}"; do
                if pid=$(running "$name"); then
                  say "$name already running (pid $pid)"
                else
                  say "starting $name"
                  # Direct calls: shellcheck >= 0.10 reports functions it only sees called
                  # through a variable ("start_$name") as never invoked (SC2317/SC2329).
                  case $name in
                  kafka) start_kafka ;;
                  cassandra) start_cassandra ;;
                  esac
                fi
              done
              for name in "''${servers[@]}"; do
                wait_ready "$name"
              done
              say "Kafka 127.0.0.1:$kafka_port, Cassandra 127.0.0.1:$cql_port; state in $state"
            }

            down() {
              local name pid
              for name in "''${servers[@]}"; do
                if pid=$(running "$name"); then
                  say "stopping $name (pid $pid)"
                  kill -TERM "$pid"
                  for _ in $(seq 30); do
                    running "$name" >/dev/null || break
                    sleep 1
                  done
                  if running "$name" >/dev/null; then
                    kill -KILL "$pid"
                  fi
                fi
                rm -f "$state/$name/pid"
              done
              if [[ ''${1-} == --wipe ]]; then
                rm -rf "$state/kafka" "$state/cassandra"
                say "wiped $state"
              fi
            }

            status() {
              local name pid all=0
              for name in "''${servers[@]}"; do
                if ! pid=$(running "$name"); then
                  say "$name: stopped"
                  all=3
                elif serving "$name"; then
                  say "$name: serving (pid $pid)"
                else
                  say "$name: running, not serving yet (pid $pid)"
                  all=3
                fi
              done
              return "$all"
            }

            case ''${1-} in
            up) up ;;
            down) down "''${2-}" ;;
            status) status ;;
            logs)
              case ''${2-both} in
              kafka | cassandra) tail -n 100 "$state/$2/$2.log" ;;
              both) for name in "''${servers[@]}"; do
                say "--- $name ---"
                tail -n 100 "$state/$name/$name.log" || true
              done ;;
              *) die "logs: kafka, cassandra or both, not $2" ;;
              esac
              ;;
            -h | --help | help) usage ;;
            *)
              usage >&2
              exit 2
              ;;
            esac
          '';
        };

      # services.aqueduct: one hardened systemd unit per pipeline.
      aqueductModule =
        {
          config,
          lib,
          pkgs,
          ...
        }:
        let
          cfg = config.services.aqueduct;
          toml = pkgs.formats.toml { };
          enabled = lib.filterAttrs (_: p: p.enable) cfg.pipelines;

          pipelineOptions =
            { name, ... }:
            {
              options = {
                enable = lib.mkEnableOption "the aqueduct pipeline ${name}" // {
                  default = true;
                };
                settings = lib.mkOption {
                  inherit (toml) type;
                  default = { };
                  example = lib.literalExpression ''
                    lib.recursiveUpdate (lib.importTOML ./pipelines/users.toml) {
                      validate.schema_file = "''${./pipelines/schemas/randomuser-user.json}";
                      kafka.bootstrap_servers = "kafka:9092";
                    }
                  '';
                  description = ''
                    The pipeline spec (the keys of the README's spec reference), rendered to
                    TOML. `name` defaults to the attribute name. The rendered file lives alone
                    in the Nix store, so give `validate.schema_file` as an absolute path, e.g.
                    `"''${./schemas/users.json}"`. Set this or `specFile`, not both.
                  '';
                };
                specFile = lib.mkOption {
                  type = lib.types.nullOr lib.types.path;
                  default = null;
                  example = lib.literalExpression ''"''${config.services.aqueduct.package}/share/aqueduct/pipelines/users.toml"'';
                  description = ''
                    An existing spec file to run instead of `settings`. A relative
                    `validate.schema_file` resolves against the file's directory, so pass a
                    path inside a directory that holds the schema too, such as the package's
                    `share/aqueduct/pipelines` or `"''${./pipelines}/users.toml"`.
                  '';
                };
                environment = lib.mkOption {
                  type = lib.types.attrsOf lib.types.str;
                  default = { };
                  example = {
                    AQUEDUCT_KAFKA__BOOTSTRAP_SERVERS = "kafka:9092";
                    AQUEDUCT_CASSANDRA__CONTACT_POINTS = ''["cassandra:9042"]'';
                    AQUEDUCT_LOG = "info";
                  };
                  description = ''
                    Environment of the service: spec overrides `AQUEDUCT_<SECTION>__<KEY>`
                    and `AQUEDUCT_LOG`. The build-time check sees them too. They end up in
                    the Nix store: put secrets in `environmentFile`.
                  '';
                };
                environmentFile = lib.mkOption {
                  type = lib.types.nullOr lib.types.path;
                  default = null;
                  example = "/run/secrets/aqueduct-users.env";
                  description = ''
                    A file of `NAME=value` lines read when the service starts (systemd's
                    `EnvironmentFile`), for secrets such as `AQUEDUCT_CASSANDRA__PASSWORD`.
                    The build-time check does not see it, so a required key set only here
                    needs `checkSpec = false`.
                  '';
                };
                extraArgs = lib.mkOption {
                  type = lib.types.listOf lib.types.str;
                  default = [ ];
                  example = [
                    "--only"
                    "load"
                  ];
                  description = ''
                    Arguments of `aqueduct run` before the spec: `--only ingest|load`,
                    `--once`, `--log-format json`.
                  '';
                };
                checkSpec = lib.mkOption {
                  type = lib.types.bool;
                  default = true;
                  description = ''
                    Run `aqueduct check` on the spec, with `environment`, when the system is
                    built, so that an invalid spec fails the build instead of the service.
                  '';
                };
              };
            };

          specOf =
            name: p:
            if p.specFile != null then
              p.specFile
            else
              toml.generate "${name}.toml" ({ inherit name; } // p.settings);

          # Offline, in the build sandbox, as nixpkgs' vector module validates its config
          # (nixos/modules/services/logging/vector.nix).
          checkedSpec =
            name: p:
            pkgs.runCommand "aqueduct-${name}-check"
              {
                nativeBuildInputs = [ cfg.package ];
                env = p.environment;
              }
              ''
                aqueduct check ${specOf name p} > $out
              '';

          unitFor = name: p: {
            description = "aqueduct pipeline ${name}";
            wantedBy = [ "multi-user.target" ];
            wants = [ "network-online.target" ];
            # Ordering only: aqueduct itself retries (and systemd restarts it) until the
            # servers answer, wherever they run.
            after = [
              "network-online.target"
            ]
            ++ lib.optional config.services.apache-kafka.enable "apache-kafka.service"
            ++ lib.optional config.services.cassandra.enable "cassandra.service";
            inherit (p) environment;
            serviceConfig = {
              ExecStart = "${lib.getExe cfg.package} run ${
                lib.escapeShellArgs (p.extraArgs ++ [ "${specOf name p}" ])
              }";
              EnvironmentFile = lib.mkIf (p.environmentFile != null) p.environmentFile;
              Restart = "on-failure";
              RestartSec = 5;
              # Exit 2 is an invalid spec or usage: a restart cannot fix it.
              RestartPreventExitStatus = 2;
              DynamicUser = true;
              CapabilityBoundingSet = "";
              LockPersonality = true;
              MemoryDenyWriteExecute = true;
              NoNewPrivileges = true;
              PrivateDevices = true;
              PrivateTmp = true;
              PrivateUsers = true;
              ProtectClock = true;
              ProtectControlGroups = true;
              ProtectHome = true;
              ProtectHostname = true;
              ProtectKernelLogs = true;
              ProtectKernelModules = true;
              ProtectKernelTunables = true;
              ProtectProc = "invisible";
              ProtectSystem = "strict";
              RemoveIPC = true;
              # AF_NETLINK: glibc's getaddrinfo asks the kernel for local addresses.
              RestrictAddressFamilies = [
                "AF_INET"
                "AF_INET6"
                "AF_UNIX"
                "AF_NETLINK"
              ];
              RestrictNamespaces = true;
              RestrictRealtime = true;
              RestrictSUIDSGID = true;
              SystemCallArchitectures = "native";
              SystemCallFilter = [
                "@system-service"
                "~@privileged"
                "~@resources"
              ];
              UMask = "0077";
            };
            # Keep restarting while Kafka or Cassandra is down, however long.
            unitConfig.StartLimitIntervalSec = 0;
          };
        in
        {
          options.services.aqueduct = {
            package = lib.mkOption {
              type = lib.types.package;
              # `inherit`, not `default = ….default`: statix's manual_inherit_from lint.
              inherit (self.packages.${pkgs.stdenv.hostPlatform.system}) default;
              defaultText = lib.literalExpression "aqueduct.packages.\${pkgs.stdenv.hostPlatform.system}.default";
              description = "The aqueduct package the pipelines run (and are checked) with.";
            };
            pipelines = lib.mkOption {
              type = lib.types.attrsOf (lib.types.submodule pipelineOptions);
              default = { };
              description = ''
                Pipelines to run, one systemd service `aqueduct-<name>.service` each.
              '';
            };
          };

          config = {
            assertions = lib.mapAttrsToList (name: p: {
              assertion = (p.settings == { }) != (p.specFile == null);
              message = "services.aqueduct.pipelines.${name}: set exactly one of `settings` and `specFile`.";
            }) enabled;

            system.checks = lib.mapAttrsToList checkedSpec (lib.filterAttrs (_: p: p.checkSpec) enabled);

            systemd.services = lib.mapAttrs' (
              name: p: lib.nameValuePair "aqueduct-${name}" (unitFor name p)
            ) enabled;
          };
        };
    in
    {
      packages = forSystems (linuxSystems ++ darwinSystems) (pkgs: {
        default = aqueductFor pkgs;
      });

      apps = forSystems linuxSystems (
        pkgs:
        let
          inherit (pkgs.stdenv.hostPlatform) system;
        in
        {
          default = {
            type = "app";
            program = lib.getExe self.packages.${system}.default;
            meta.description = "Run a pipeline: nix run . -- pipelines/users.toml";
          };
          stack = {
            type = "app";
            program = "${stackFor pkgs}/bin/aqueduct-stack";
            meta.description = "Local Kafka and Cassandra: nix run .#stack -- up|down|status|logs";
          };
        }
      );

      devShells = forSystems (linuxSystems ++ darwinSystems) (pkgs: {
        default = pkgs.mkShell {
          # `cargo build` here builds the bundled librdkafka (no `dynamic-rdkafka`):
          # cmake, pkg-config and these libraries, as the Debian packages in .ci/run.
          buildInputs = [
            pkgs.openssl
            pkgs.zlib
            pkgs.zstd
            pkgs.curl
          ];
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.cmake
            pkgs.pkg-config
            pkgs.apacheKafka # kafka-topics.sh, kafka-console-consumer.sh, ...
            pkgs.cassandra # cqlsh, nodetool
            pkgs.python3 # scripts/*.py
            pkgs.nixfmt
          ];
        };
      });

      nixosModules.default = aqueductModule;

      # `nix fmt`: nixfmt (RFC 166 style) over every .nix file (pkgs/by-name/ni/nixfmt-tree).
      formatter = forSystems (linuxSystems ++ darwinSystems) (pkgs: pkgs.nixfmt-tree);

      # `nix flake check` builds these for the current system. VM tests need KVM.
      checks = forSystems linuxSystems (
        pkgs:
        let
          inherit (pkgs.stdenv.hostPlatform) system;
          aqueduct = self.packages.${system}.default;
          nixFiles = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.fileFilter (file: file.hasExt "nix") ./.;
          };
          # `legacyPackages.${system}` is how a flake picks its system; statix's
          # unquoted_splice lint would quote every such splice.
          statixConfig = pkgs.writeText "statix.toml" ''
            disabled = [ "unquoted_splice" ]
          '';
          vmTest =
            file:
            pkgs.testers.runNixOSTest (
              import file {
                inherit aqueduct;
                module = self.nixosModules.default;
              }
            );
        in
        {
          package = aqueduct;
          # Builds the script, which runs shellcheck on it.
          stack = stackFor pkgs;

          clippy = aqueduct.overrideAttrs (old: {
            pname = "aqueduct-clippy";
            nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
            buildPhase = ''
              cargo clippy --offline --all-targets ${
                lib.concatMapStringsSep " " (f: "--features ${f}") (cargoFeatures pkgs)
              } -- -D warnings
            '';
            doCheck = false;
            installPhase = "mkdir -p $out";
          });

          rustfmt = pkgs.runCommand "aqueduct-rustfmt" { nativeBuildInputs = [ pkgs.rustfmt ]; } ''
            find ${aqueduct.src} -name '*.rs' -exec rustfmt --check --edition ${cargoToml.package.edition} {} +
            mkdir -p $out
          '';

          nix-format = pkgs.runCommand "aqueduct-nix-format" { nativeBuildInputs = [ pkgs.nixfmt ]; } ''
            find ${nixFiles} -name '*.nix' -exec nixfmt --check {} +
            mkdir -p $out
          '';

          nix-lint =
            pkgs.runCommand "aqueduct-nix-lint"
              {
                nativeBuildInputs = [
                  pkgs.deadnix
                  pkgs.statix
                ];
              }
              ''
                deadnix --fail ${nixFiles}
                statix check --config ${statixConfig} ${nixFiles}
                mkdir -p $out
              '';

          vm-single-node = vmTest ./nixos-tests/single-node.nix;
          vm-cluster = vmTest ./nixos-tests/cluster.nix;
        }
      );
    };
}
