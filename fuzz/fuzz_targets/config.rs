//! Fuzz target: `gqcim::fuzzing::config` (see that module); any panic, overflow, timeout or
//! allocation past libFuzzer's limits is a finding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gqcim::fuzzing::config(data);
});
