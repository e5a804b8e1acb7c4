#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    amazon_cloudwatch_publisher::fuzzing::timestamp(data);
});
