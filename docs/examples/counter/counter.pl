# A stateful HTTP service whose state lives only in its memory: GET / counts
# the requests it has answered since it started; GET /health does not count.
# A live migration keeps the count going; a restart would set it back to 1.
use strict;
use warnings;
use IO::Socket::INET;

my $port     = $ENV{PORT} || 8000;
my $greeting = $ENV{GREETING} // 'hello';
my $started  = time;
my $count    = 0;

my $server = IO::Socket::INET->new(LocalPort => $port, Listen => 64, ReuseAddr => 1, Proto => 'tcp')
  or die "cannot listen on $port: $!\n";
while (1) {
    my $client = $server->accept or next;
    my $request = <$client> // '';
    while (my $header = <$client>) { last if $header =~ /^\r?\n$/ }
    my ($path) = $request =~ m{^GET (\S+)};
    my $body;
    if (defined $path && $path eq '/health') {
        $body = "ok\n";
    } else {
        $count++;
        $body = sprintf("%s\ncount=%d\nuptime_s=%d\n", $greeting, $count, time - $started);
    }
    print $client "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " . length($body)
      . "\r\nConnection: close\r\n\r\n" . $body;
    close $client;
}
