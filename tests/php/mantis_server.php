<?php
// A MantisBT-style rpc/encoded SOAP service on PHP's own SoapServer (ext-soap), driven by the
// real mantisconnect.wsdl from the corpus. PHP decodes Veneer's encoded requests (xsi:type,
// SOAP-ENC arrays, structs) and encodes the replies the way MantisBT servers do.
// Run with PHP's built-in server: php -S 127.0.0.1:0 tests/php/mantis_server.php
ini_set('soap.wsdl_cache_enabled', '0');

if ($_SERVER['REQUEST_METHOD'] !== 'POST') {
    http_response_code(405);
    return;
}

function check_login($username, $password) {
    if ($username !== 'reporter' || $password !== 's3cr&t<') {
        throw new SoapFault('Client', 'Access denied');
    }
}

function issue($id) {
    return [
        'id' => $id,
        'summary' => "Pump P-$id leaks",
        'description' => "Ölstand <niedrig> & steigend",
        'project' => ['id' => 1, 'name' => 'plant'],
        'status' => ['id' => 10, 'name' => 'new'],
        'custom_fields' => [
            ['field' => ['id' => 1, 'name' => 'line'], 'value' => 'L2'],
            ['field' => ['id' => 2, 'name' => 'shift'], 'value' => ''],
        ],
        'attachments' => [],
        'due_date' => null,
        'sticky' => false,
        'last_updated' => '2026-11-25T08:00:00+00:00',
    ];
}

function mc_issue_get($username, $password, $issue_id) {
    check_login($username, $password);
    if ($issue_id < 1 || $issue_id > 1000) {
        throw new SoapFault('Client', "Issue #$issue_id not found");
    }
    return issue($issue_id);
}

function mc_issues_get($username, $password, $issue_ids) {
    check_login($username, $password);
    if (!is_array($issue_ids)) {
        throw new SoapFault('Client', 'issue_ids is not an array: ' . gettype($issue_ids));
    }
    return array_map('issue', $issue_ids);
}

function mc_issue_note_add($username, $password, $issue_id, $note) {
    check_login($username, $password);
    if (!is_object($note) || !isset($note->text)) {
        throw new SoapFault('Client', 'note is not an IssueNoteData struct');
    }
    // The note's id is derived from what arrived, so the test sees PHP decoded it exactly.
    return $issue_id * 1000 + strlen($note->text) + (isset($note->view_state) ? $note->view_state->id : 0);
}

$server = new SoapServer(__DIR__ . '/../fixtures/wsdl/mantisconnect.wsdl');
$server->addFunction(['mc_issue_get', 'mc_issues_get', 'mc_issue_note_add']);
$server->handle();
