<?php
header("Content-Type: text/plain");
echo "legacy PHP at " . $_SERVER["SCRIPT_NAME"] . " (request " . $_SERVER["REQUEST_URI"] . ")\n";
echo "hello, " . htmlspecialchars($_GET["name"] ?? "world") . "\n";
