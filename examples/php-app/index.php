<?php
// A minimal web app: answers every request with JSON naming the instance that answered.
$vcap = json_decode(getenv('VCAP_APPLICATION') ?: '{}', true);
header('Content-Type: application/json');
echo json_encode([
    'app' => $vcap['application_name'] ?? null,
    'instance_index' => (int) getenv('CF_INSTANCE_INDEX'),
    'language' => 'php',
    'path' => parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH),
]), "\n";
