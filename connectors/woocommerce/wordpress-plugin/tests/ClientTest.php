<?php
/**
 * The signed client: what it sends, and what a store that cannot reach the app does.
 *
 * @package Stammkunde
 */

// phpcs:disable

use PHPUnit\Framework\TestCase;

final class ClientTest extends TestCase {

	protected function setUp(): void {
		SK::reset();
		SK::configure();
	}

	public function test_member_call_is_signed_with_the_shops_secret_and_names_the_logged_in_user() {
		SK::app( array( '/api/woocommerce/v1/customers/42' => array( 200, array( 'balance' => array( 'available' => 600 ) ) ) ) );

		$view = ( new Stammkunde_Client() )->member( 42, 'de' );

		$this->assertSame( 600, $view['balance']['available'] );
		$request = SK::$requests[0];
		$this->assertSame( 'https://loyalty.example/api/woocommerce/v1/customers/42?lang=de', $request['url'] );
		$headers = $request['args']['headers'];
		$expected = Stammkunde_Signer::sign( 'test-secret-0123456789', 'GET', '/api/woocommerce/v1/customers/42?lang=de', (int) $headers['X-Stammkunde-Timestamp'], $headers['X-Stammkunde-Nonce'], '' );
		$this->assertSame( $expected, $headers['X-Stammkunde-Signature'] );
		$this->assertSame( '7', $headers['X-Stammkunde-Shop'] );
		$this->assertLessThanOrEqual( 5, abs( time() - (int) $headers['X-Stammkunde-Timestamp'] ) );
		$this->assertSame( 0, $request['args']['redirection'] );
	}

	public function test_a_path_under_the_app_address_is_part_of_what_is_signed() {
		SK::configure( 'test-secret-0123456789', 'https://example.org/loyalty/' );
		SK::app( array( '/loyalty/api/woocommerce/v1/ping' => array( 200, array( 'shop' => 7 ) ) ) );

		( new Stammkunde_Client() )->ping();

		$headers = SK::$requests[0]['args']['headers'];
		$expected = Stammkunde_Signer::sign( 'test-secret-0123456789', 'GET', '/loyalty/api/woocommerce/v1/ping', (int) $headers['X-Stammkunde-Timestamp'], $headers['X-Stammkunde-Nonce'], '' );
		$this->assertSame( $expected, $headers['X-Stammkunde-Signature'] );
	}

	public function test_redeem_posts_the_body_it_signed() {
		SK::app( array( '/api/woocommerce/v1/customers/42/redemptions' => array( 201, array( 'redemption_id' => 5, 'status' => 'pending', 'code' => null ) ) ) );

		$result = ( new Stammkunde_Client() )->redeem( 42, '5 € Rabatt', '3f2a1c9e-8b7d-4e6f-a5b4-c3d2e1f0a9b8', 'de' );

		$this->assertTrue( $result['ok'] );
		$this->assertSame( 5, $result['redemption']['redemption_id'] );
		$args = SK::$requests[0]['args'];
		$this->assertSame( array( 'reward' => '5 € Rabatt', 'key' => '3f2a1c9e-8b7d-4e6f-a5b4-c3d2e1f0a9b8' ), json_decode( $args['body'], true ) );
		$headers = $args['headers'];
		$this->assertSame( Stammkunde_Signer::sign( 'test-secret-0123456789', 'POST', '/api/woocommerce/v1/customers/42/redemptions?lang=de', (int) $headers['X-Stammkunde-Timestamp'], $headers['X-Stammkunde-Nonce'], $args['body'] ), $headers['X-Stammkunde-Signature'] );
	}

	public function test_a_refused_redemption_brings_the_apps_sentence() {
		SK::app( array( '/api/woocommerce/v1/customers/42/redemptions' => array( 422, array( 'error' => 'not_enough_points', 'message' => 'Sie haben nicht genug Punkte für „5 € Rabatt“.' ) ) ) );

		$result = ( new Stammkunde_Client() )->redeem( 42, '5 € Rabatt', '3f2a1c9e-8b7d-4e6f-a5b4-c3d2e1f0a9b8', 'de' );

		$this->assertSame( array( 'ok' => false, 'message' => 'Sie haben nicht genug Punkte für „5 € Rabatt“.' ), $result );
	}

	public function test_an_unknown_customer_is_no_member_yet() {
		SK::app( array( '/api/woocommerce/v1/customers/42' => array( 404, array( 'error' => 'unknown_customer' ) ) ) );

		$this->assertFalse( ( new Stammkunde_Client() )->member( 42, 'de' ) );
	}

	public function test_an_unreachable_app_gives_null_logs_why_and_is_left_alone_for_a_minute() {
		SK::$http = null; // every request fails to connect

		$client = new Stammkunde_Client();
		$first  = $client->member( 42, 'de' );
		$second = $client->program( 'de' );

		$this->assertNull( $first );
		$this->assertNull( $second );
		$this->assertCount( 1, SK::$requests );
		$this->assertStringContainsString( 'Stammkunde: app unreachable: cURL error 7', SK::log() );
		$this->assertStringNotContainsString( 'test-secret', SK::log() );
	}

	public function test_a_refused_signature_is_logged_with_what_to_check() {
		SK::app( array( '/api/woocommerce/v1/customers/42' => array( 401, array( 'error' => 'bad_signature' ) ) ) );

		$this->assertNull( ( new Stammkunde_Client() )->member( 42, 'de' ) );
		$this->assertStringContainsString( 'the app refused the signature (HTTP 401): check the shop id and the shared secret', SK::log() );
	}

	public function test_a_garbled_answer_is_logged() {
		SK::app( array( '/api/woocommerce/v1/customers/42' => array( 200, '<html>Bad Gateway</html>' ) ) );

		$this->assertNull( ( new Stammkunde_Client() )->member( 42, 'de' ) );
		$this->assertStringContainsString( 'the app answered HTTP 200 without a JSON object', SK::log() );
	}

	public function test_an_unconfigured_plugin_asks_nothing() {
		SK::$options = array();

		$this->assertNull( ( new Stammkunde_Client() )->member( 42, 'de' ) );
		$this->assertCount( 0, SK::$requests );
	}

	public function test_an_http_app_address_other_than_loopback_is_not_used() {
		SK::configure( 'test-secret-0123456789', 'http://loyalty.example' );

		$this->assertNull( ( new Stammkunde_Client() )->ping() );
		$this->assertCount( 0, SK::$requests );
	}

	public function test_a_referral_code_with_odd_characters_is_not_sent() {
		SK::app( array() );

		$this->assertNull( ( new Stammkunde_Client() )->referral_code( '../customers/42', 'de' ) );
		$this->assertCount( 0, SK::$requests );
	}
}
