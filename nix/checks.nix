# `nix flake check` builds these for the current system; VM tests need KVM.
# `nix flake check --no-build` (CI, through ../shared/nix-eval/flake-check) evaluates them
# all, which is where `module` proves the NixOS module.
{
  self,
  nixpkgs,
  pkgs,
}:
let
  inherit (nixpkgs) lib;
  inherit (pkgs.stdenv.hostPlatform) system;
  aqueduct = self.packages.${system}.default;
  cargoToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  nixFiles = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.fileFilter (file: file.hasExt "nix") ../.;
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
  # Builds the wrapper, which runs shellcheck on it.
  stack = pkgs.callPackage ./stack.nix { };

  module = import ./module-check.nix {
    inherit nixpkgs aqueduct pkgs;
    module = self.nixosModules.default;
  };

  clippy = aqueduct.overrideAttrs (old: {
    pname = "aqueduct-clippy";
    nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
    buildPhase = ''
      cargo clippy --offline --workspace --all-targets --test faults ${
        lib.concatMapStringsSep " " (f: "--features ${f}") aqueduct.cargoFeatures
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

  vm-single-node = vmTest ../nixos-tests/single-node.nix;
  vm-cluster = vmTest ../nixos-tests/cluster.nix;
}
