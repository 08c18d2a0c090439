//! Fuzz target: `gqcim::fuzzing::voc_xml` (see that module); any panic, overflow, timeout or
//! allocation past libFuzzer's limits is a finding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gqcim::fuzzing::voc_xml(data);
});
