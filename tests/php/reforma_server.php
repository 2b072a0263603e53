<?php
// The reformagkh.ru API (rpc/encoded, PHP SoapServer style, with one-way operations) on
// PHP's own SoapServer, from the corpus WSDL. Logout is one-way: PHP answers 202 with no
// body, and records that it was called in the file named by REFORMA_MARKER.
ini_set('soap.wsdl_cache_enabled', '0');

if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    http_response_code(405);
    return;
}

function Logout() {
    file_put_contents(getenv('REFORMA_MARKER'), 'logged out');
}

function GetRequestList() {
    return [
        ['id' => 1, 'inn' => '7701234567', 'create_date' => '2026-11-20T10:00:00+03:00', 'update_date' => null, 'status' => 1],
        ['id' => 2, 'inn' => '7707654321', 'create_date' => '2026-11-24T09:30:00+03:00', 'update_date' => '2026-11-25T08:00:00+03:00', 'status' => 3],
    ];
}

$server = new SoapServer(__DIR__ . '/../fixtures/wsdl/reformagkh.wsdl');
$server->addFunction(['Logout', 'GetRequestList']);
$server->handle();
