<#
.SYNOPSIS
    Installs (or removes) the Writeback Doctor collector as a Windows service.

.DESCRIPTION
    Run in an elevated PowerShell on the machine that will run the collector, usually the Entra
    Connect Sync server:

        .\Install-WbdCollector.ps1 -Binary .\wbd-collector.exe -Config .\collector.toml

    It copies the binary to "$env:ProgramFiles\WritebackDoctor", the configuration to
    "$env:ProgramData\WritebackDoctor\collector" (the default state_dir, readable only by SYSTEM,
    Administrators and the service account), and creates the service "WbdCollector" running
    `wbd-collector.exe service --config <config> --log-file <state dir>\collector.log`,
    started automatically (delayed) and restarted on failure.

    Enroll once before starting it, as the account the service runs as, e.g. for LocalSystem:
        & "$env:ProgramFiles\WritebackDoctor\wbd-collector.exe" enroll --server https://wbd.example.com `
            --state-dir "$env:ProgramData\WritebackDoctor\collector" --token <token>
    (the directory's ACL already admits SYSTEM and Administrators). Then: Start-Service WbdCollector

    Account: LocalSystem by default. To read the ADSync module and the Application log with less
    privilege, pass -Account with a group managed service account (DOMAIN\gmsa-wbd$) that is a
    member of the local groups ADSyncAdmins and Event Log Readers.

    Stopping the service (Stop-Service, or a shutdown) lets running probes write their results
    for up to 10 seconds; everything already spooled stays on disk.

.PARAMETER Uninstall
    Stops and removes the service; keeps the state directory (identity, spool) and the log.
#>
[CmdletBinding(DefaultParameterSetName = 'Install')]
param(
    [Parameter(ParameterSetName = 'Install', Mandatory = $true)] [string] $Binary,
    [Parameter(ParameterSetName = 'Install', Mandatory = $true)] [string] $Config,
    [Parameter(ParameterSetName = 'Install')] [string] $Account = 'LocalSystem',
    [Parameter(ParameterSetName = 'Install')] [string] $EnvironmentFile,
    [Parameter(ParameterSetName = 'Uninstall', Mandatory = $true)] [switch] $Uninstall
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$ServiceName = 'WbdCollector'
$InstallDir = Join-Path $env:ProgramFiles 'WritebackDoctor'
$StateDir = Join-Path $env:ProgramData 'WritebackDoctor\collector'
$Exe = Join-Path $InstallDir 'wbd-collector.exe'
$ConfigPath = Join-Path $StateDir 'collector.toml'
$LogPath = Join-Path $StateDir 'collector.log'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Run this script in an elevated PowerShell (as Administrator).'
}

if ($Uninstall) {
    $svc = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
    if ($svc) {
        if ($svc.Status -ne 'Stopped') { Stop-Service -Name $ServiceName -Force }
        & sc.exe delete $ServiceName | Out-Null
        Write-Host "Removed the service $ServiceName. Kept $StateDir (identity, spool, log)."
    } else {
        Write-Host "No service $ServiceName is installed."
    }
    return
}

if (-not (Test-Path -LiteralPath $Binary)) { throw "-Binary: $Binary does not exist" }
if (-not (Test-Path -LiteralPath $Config)) { throw "-Config: $Config does not exist" }

# Validate the configuration with the binary itself before installing anything.
& $Binary probe --config $Config --only endpoint --json | Out-Null
if ($LASTEXITCODE -eq 2) { throw "-Config: $Config is not a valid collector configuration (see the message above)" }

New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
New-Item -ItemType Directory -Force -Path $StateDir | Out-Null
$existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($existing -and $existing.Status -ne 'Stopped') { Stop-Service -Name $ServiceName -Force }
Copy-Item -LiteralPath $Binary -Destination $Exe -Force
Copy-Item -LiteralPath $Config -Destination $ConfigPath -Force

# The state directory holds the collector's private key: SYSTEM, Administrators and the service
# account only, nothing inherited.
$acl = New-Object System.Security.AccessControl.DirectorySecurity
$acl.SetAccessRuleProtection($true, $false)
$inherit = [System.Security.AccessControl.InheritanceFlags]'ContainerInherit, ObjectInherit'
$none = [System.Security.AccessControl.PropagationFlags]::None
foreach ($who in @('NT AUTHORITY\SYSTEM', 'BUILTIN\Administrators') + $(if ($Account -ne 'LocalSystem') { @($Account) } else { @() })) {
    $rule = New-Object System.Security.AccessControl.FileSystemAccessRule($who, 'FullControl', $inherit, $none, 'Allow')
    $acl.AddAccessRule($rule)
}
Set-Acl -LiteralPath $StateDir -AclObject $acl

$binPath = "`"$Exe`" service --config `"$ConfigPath`" --log-file `"$LogPath`""
if ($existing) {
    & sc.exe config $ServiceName binPath= $binPath start= delayed-auto | Out-Null
} else {
    New-Service -Name $ServiceName -BinaryPathName $binPath -DisplayName 'Writeback Doctor collector' `
        -Description 'Checks what Entra SSPR password writeback needs on this site and reports it to Writeback Doctor.' `
        -StartupType Automatic | Out-Null
    & sc.exe config $ServiceName start= delayed-auto | Out-Null
}
if ($Account -ne 'LocalSystem') {
    # A gMSA has no password: sc.exe takes the account name with an empty password.
    & sc.exe config $ServiceName obj= $Account password= '' | Out-Null
}
# Restart after 5 s, 30 s, then every minute; reset the failure count after a day.
& sc.exe failure $ServiceName reset= 86400 actions= restart/5000/restart/30000/restart/60000 | Out-Null
& sc.exe failureflag $ServiceName 1 | Out-Null

# Secrets named by *_env settings, as service environment (REG_MULTI_SZ "NAME=value" lines),
# readable only by administrators and SYSTEM through the service's registry key.
if ($EnvironmentFile) {
    $lines = Get-Content -LiteralPath $EnvironmentFile | Where-Object { $_ -match '^[A-Za-z_][A-Za-z0-9_]*=' }
    Set-ItemProperty -Path "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName" -Name Environment -Type MultiString -Value $lines
}

Write-Host "Installed $ServiceName ($Account): $binPath"
Write-Host "Enroll once if not done yet, then: Start-Service $ServiceName   (log: $LogPath)"
