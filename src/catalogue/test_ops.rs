//! The test-only operations: crash, hang and sandbox probes for the
//! isolation tests. They exist only in `test-ops` builds ([`find_op`]
//! refuses them otherwise) and are never listed by `/v1/ops` or
//! `/openapi.json`.
//!
//! [`find_op`]: super::find_op

use super::spec::{p, Kind, OpSpec};
use crate::proto::Op;

pub(super) static TEST_OPS: &[OpSpec] = &[
    OpSpec {
        name: "__sleep",
        help: "test only: sleep in the worker",
        params: &[p(
            "ms",
            Kind::UInt {
                min: 0,
                max: 600_000,
            },
            true,
            None,
            "milliseconds",
        )],
        build: |v| {
            Ok(Op::TestSleep {
                ms: v.u64("ms").unwrap_or(0),
            })
        },
        test_only: true,
        alias_of: None,
        example: "",
    },
    OpSpec {
        name: "__panic",
        help: "test only: panic in the engine",
        params: &[],
        build: |_| Ok(Op::TestPanic),
        test_only: true,
        alias_of: None,
        example: "",
    },
    OpSpec {
        name: "__abort",
        help: "test only: abort the worker",
        params: &[],
        build: |_| Ok(Op::TestAbort),
        test_only: true,
        alias_of: None,
        example: "",
    },
    OpSpec {
        name: "__segv",
        help: "test only: crash the worker with SIGSEGV",
        params: &[],
        build: |_| Ok(Op::TestSegv),
        test_only: true,
        alias_of: None,
        example: "",
    },
    OpSpec {
        name: "__open",
        help: "test only: open a file in the worker (forbidden by the sandbox)",
        params: &[],
        build: |_| Ok(Op::TestOpenFile),
        test_only: true,
        alias_of: None,
        example: "",
    },
    OpSpec {
        name: "__socket",
        help: "test only: open a socket in the worker (forbidden by the sandbox)",
        params: &[],
        build: |_| Ok(Op::TestSocket),
        test_only: true,
        alias_of: None,
        example: "",
    },
    OpSpec {
        name: "__kill_master",
        help: "test only: signal the master from the worker (forbidden by the sandbox)",
        params: &[],
        build: |_| Ok(Op::TestKillMaster),
        test_only: true,
        alias_of: None,
        example: "",
    },
];
