<?php
/**
 * The signing agrees with the app's: one vector, computed once, checked on both sides.
 *
 * @package Stammkunde
 */

// phpcs:disable

use PHPUnit\Framework\TestCase;

final class SignerTest extends TestCase {

	public function test_the_shared_vector_signs_the_same_on_this_side() {
		$vector = json_decode( file_get_contents( __DIR__ . '/signing-vector.json' ), true );

		$canonical = Stammkunde_Signer::canonical( $vector['method'], $vector['path'], $vector['timestamp'], $vector['nonce'], $vector['body'] );
		$signature = Stammkunde_Signer::sign( $vector['secret'], $vector['method'], $vector['path'], $vector['timestamp'], $vector['nonce'], $vector['body'] );

		$this->assertSame( $vector['canonical'], $canonical );
		$this->assertSame( $vector['signature'], $signature );
	}

	public function test_headers_carry_shop_timestamp_nonce_and_signature() {
		$headers = Stammkunde_Signer::headers( '7', 'geheim', 'get', '/api/woocommerce/v1/ping', '', 1767225600, str_repeat( 'a', 32 ) );

		$this->assertSame( '7', $headers['X-Stammkunde-Shop'] );
		$this->assertSame( '1767225600', $headers['X-Stammkunde-Timestamp'] );
		$this->assertSame( str_repeat( 'a', 32 ), $headers['X-Stammkunde-Nonce'] );
		$this->assertSame( Stammkunde_Signer::sign( 'geheim', 'GET', '/api/woocommerce/v1/ping', 1767225600, str_repeat( 'a', 32 ), '' ), $headers['X-Stammkunde-Signature'] );
	}

	public function test_every_request_gets_a_fresh_nonce() {
		$this->assertMatchesRegularExpression( '/^[0-9a-f]{32}$/', Stammkunde_Signer::nonce() );
		$this->assertNotSame( Stammkunde_Signer::nonce(), Stammkunde_Signer::nonce() );
	}
}
