#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kms_envelope_fuzz::header(data));
