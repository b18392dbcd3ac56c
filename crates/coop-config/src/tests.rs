use super::*;

#[test]
fn parses_lxc_busybox_style_config() {
    let c = Config::parse_str(
        "t.conf",
        r#"
# comment
lxc.rootfs.path = dir:/var/lib/lxc/bb/rootfs
lxc.signal.halt = SIGUSR1
lxc.signal.reboot = SIGTERM
lxc.uts.name = "bb"
lxc.autodev = 1
lxc.tty.max = 5
lxc.pty.max = 1
lxc.cap.drop = sys_module mac_admin mac_override sys_time
lxc.mount.auto = cgroup:mixed proc:mixed sys:ro
lxc.mount.entry = shm dev/shm tmpfs defaults,create=dir 0 0
lxc.mount.entry = /lib lib none ro,bind 0 0
lxc.net.0.type = veth
lxc.net.0.link = lxcbr0
lxc.apparmor.profile = generated
lxc.apparmor.allow_nesting = 1
coop.limits.cpu = 0.5
coop.limits.memory = 256M
"#,
    )
    .unwrap();
    assert_eq!(
        c.rootfs.as_deref(),
        Some(Path::new("/var/lib/lxc/bb/rootfs"))
    );
    assert_eq!(c.signal_halt, Some(10));
    assert_eq!(c.uts_name.as_deref(), Some("bb"));
    assert_eq!(c.tty_max, 5);
    assert_eq!(c.cap_drop.as_ref().unwrap().len(), 4);
    assert_eq!(c.mount_auto.sys, Some(SysMode::Ro));
    assert_eq!(c.mount_entries[1].target, "lib");
    assert!(c.mount_entries[1].has_option("bind"));
    assert_eq!(c.net.len(), 2);
    assert_eq!(c.limits.cpu, Some(0.5));
    assert_eq!(c.limits.memory, Some(256 << 20));
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = Config::parse_str("x.conf", "lxc.uts.name = a\nlxc.uts.nmae = b\n").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("x.conf:2"), "{msg}");
    assert!(msg.contains("lxc.uts.nmae"), "{msg}");
    assert!(msg.contains("did you mean lxc.uts.name"), "{msg}");
}

#[test]
fn bad_values_are_errors() {
    for bad in [
        "coop.limits.cpu = fast",
        "coop.limits.cpu = 0",
        "coop.limits.memory = lots",
        "coop.limits.pids = 0",
        "coop.limits.cpuset = 3-1",
        "lxc.signal.halt = SIGNOPE",
        "lxc.tty.max = -1",
        "lxc.cap.drop = sys_wizard",
        "lxc.mount.auto = proc:weird",
        "lxc.mount.entry = a ../../etc none bind 0 0",
        "lxc.idmap = x 0 1 2",
        "lxc.net.x.type = veth",
        "lxc.arch = sparc",
        "just a line",
    ] {
        assert!(Config::parse_str("b.conf", bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn signals() {
    assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), 37);
    assert_eq!(parse_signal("usr1").unwrap(), 10);
    assert_eq!(parse_signal("30").unwrap(), 30);
    assert_eq!(signal_name(37), "SIGRTMIN+3");
    assert_eq!(signal_name(10), "SIGUSR1");
}

#[test]
fn sizes() {
    assert_eq!(parse_size("256M").unwrap(), 256 << 20);
    assert_eq!(parse_size("1G").unwrap(), 1 << 30);
    assert_eq!(parse_size("512k").unwrap(), 512 << 10);
    assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
    assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
    assert_eq!(parse_size("2T").unwrap(), 2 << 40);
    assert_eq!(parse_size("64MB").unwrap(), 64 << 20);
    assert_eq!(parse_size("3gib").unwrap(), 3 << 30);
    assert!(parse_size("-1M").is_err());
    assert!(parse_size("M").is_err());
}

#[test]
fn empty_value_clears_lists() {
    let c = Config::parse_str("c", "lxc.cap.drop = sys_time\nlxc.cap.drop =\n").unwrap();
    assert_eq!(c.cap_drop, Some(vec![]));
}

#[test]
fn include_file_and_directory() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("conf.d")).unwrap();
    std::fs::write(d.path().join("conf.d/10-a.conf"), "lxc.tty.max = 2\n").unwrap();
    std::fs::write(d.path().join("conf.d/20-b.conf"), "lxc.tty.max = 3\n").unwrap();
    std::fs::write(d.path().join("conf.d/README"), "not config\n").unwrap();
    let main = d.path().join("config");
    std::fs::write(
        &main,
        format!("lxc.include = {}\n", d.path().join("conf.d").display()),
    )
    .unwrap();
    assert_eq!(Config::load(&main).unwrap().tty_max, 3);
    // A loop is caught, not followed forever.
    std::fs::write(&main, format!("lxc.include = {}\n", main.display())).unwrap();
    assert!(Config::load(&main)
        .unwrap_err()
        .to_string()
        .contains("nest"));
}

#[test]
fn lxc_system_common_conf_parses_when_present() {
    let p = Path::new("/usr/share/lxc/config/common.conf");
    if !p.exists() {
        eprintln!("SKIP: {} not installed (package lxc)", p.display());
        return;
    }
    let c = Config::load(p).unwrap();
    assert!(c.seccomp_profile.is_some());
    assert!(c.cgroup_v1.iter().any(|(k, _)| k == "devices.allow"));
}

#[test]
fn command_splitting() {
    assert_eq!(
        split_command(r#"/sbin/init --opt "a b" 'c d' e\ f"#).unwrap(),
        vec!["/sbin/init", "--opt", "a b", "c d", "e f"]
    );
    assert!(split_command("'open").is_err());
}

#[test]
fn set_key_replaces_or_appends_and_keeps_the_rest() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("config");
    std::fs::write(
        &p,
        "# mine\nlxc.start.auto = 0\nlxc.uts.name = a\nlxc.start.auto = 0\n",
    )
    .unwrap();
    set_key(&p, "lxc.start.auto", "1").unwrap();
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "# mine\nlxc.start.auto = 1\nlxc.uts.name = a\n"
    );
    set_key(&p, "lxc.tty.max", "2").unwrap();
    assert!(std::fs::read_to_string(&p)
        .unwrap()
        .ends_with("lxc.tty.max = 2\n"));
    assert!(set_key(&p, "lxc.tty.max", "many").is_err());
    assert!(std::fs::read_to_string(&p)
        .unwrap()
        .ends_with("lxc.tty.max = 2\n"));
}

#[test]
fn spice_password_file_key() {
    let c = Config::parse_str(
        "g.conf",
        "coop.display.spice = 0.0.0.0:5990\ncoop.display.spice.password-file = /etc/coop/pw\n",
    )
    .unwrap();
    assert_eq!(
        c.display_spice_password_file.as_deref(),
        Some(Path::new("/etc/coop/pw"))
    );
    let e = Config::parse_str("g.conf", "\ncoop.display.spice.password-file = pw.txt\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("g.conf:2"), "{e}");
    assert!(e.contains("coop.display.spice.password-file"), "{e}");
    assert!(e.contains("\"pw.txt\" is not an absolute path"), "{e}");
    let e = Config::parse_str("g.conf", "coop.display.spice.passwordfile = /x\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("coop.display.spice.passwordfile"), "{e}");
}

#[test]
fn device_rule_keys_are_checked_with_file_line_and_key() {
    let c = Config::parse_str(
        "d.conf",
        "lxc.cgroup.devices.allow = c 10:200 rwm\n\
         lxc.cgroup2.devices.deny = a\n\
         lxc.cgroup2.devices.allow = c 1:9 rwm\n\
         lxc.cgroup.devices.deny = c 1:3 w\n",
    )
    .unwrap();
    assert_eq!(
        c.cgroup_v1,
        vec![
            ("devices.allow".to_string(), "c 10:200 rwm".to_string()),
            ("devices.deny".to_string(), "c 1:3 w".to_string()),
        ]
    );
    assert_eq!(
        c.cgroup_v2,
        vec![
            ("devices.deny".to_string(), "a".to_string()),
            ("devices.allow".to_string(), "c 1:9 rwm".to_string()),
        ]
    );
    for (text, want) in [
        (
            "lxc.cgroup.devices.allow = c 10:200 rwx\n",
            "d.conf:1: lxc.cgroup.devices.allow: invalid device rule \"c 10:200 rwx\": access",
        ),
        (
            "\nlxc.cgroup2.devices.deny = q 1:3 rwm\n",
            "d.conf:2: lxc.cgroup2.devices.deny: invalid device rule \"q 1:3 rwm\": type",
        ),
        (
            "lxc.cgroup2.devices.allow = /dev/fuse rwm\n",
            "device paths are not supported",
        ),
        (
            "lxc.cgroup.devices.list = a\n",
            "d.conf:1: lxc.cgroup.devices.list: \"devices.list\": only devices.allow and devices.deny",
        ),
    ] {
        let e = Config::parse_str("d.conf", text).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn empty_cgroup_value_clears_that_key_as_in_lxc() {
    let c = Config::parse_str(
        "e.conf",
        "lxc.cgroup2.devices.allow = c 1:9 rwm\n\
         lxc.cgroup2.memory.max = 1G\n\
         lxc.cgroup2.devices.allow = c 1:8 rwm\n\
         lxc.cgroup2.devices.allow =\n\
         lxc.cgroup2.devices.allow = c 10:200 rwm\n\
         lxc.cgroup.devices.deny =\n",
    )
    .unwrap();
    assert_eq!(
        c.cgroup_v2,
        vec![
            ("memory.max".to_string(), "1G".to_string()),
            ("devices.allow".to_string(), "c 10:200 rwm".to_string()),
        ]
    );
    assert!(c.cgroup_v1.is_empty());
}
